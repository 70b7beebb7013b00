// Package yamlconf reads hopper's YAML configuration files — hopper.yaml
// and the function files of functions_dir — and remembers the line of every
// key, so that whoever checks a value can say where it was written:
// "hopper.yaml:12: hooks.webhooks[0].url: must be an http or https URL".
//
// Contract:
//
//   - Parse reads one document (an empty file or one of only comments is
//     empty, not an error). It refuses what no reader should guess about: a
//     key set twice in one mapping, a second document with content, an
//     alias to the value it is in, a "<<" merge of anything but mappings.
//     Every error it returns is an *Error naming the file, and the line and
//     key when there is one.
//   - Keys are spelled as the user wrote them and as errors name them:
//     mapping keys joined by dots, list items by index: "targets[1].name".
//     File.Line finds a key's line, or that of the nearest key around it
//     that was written ("targets[0].url" when url is missing: the line of
//     targets[0]); keys that came in through a merge or an alias have the
//     line of the key that holds them.
//   - Values come two ways. File.Settings gives every value as its text,
//     checked against a struct type (its keys, by struct tag, and the shape
//     of each value: mapping, list or scalar), ready to be layered with
//     environment variables and flags, which are text too; Fill then decodes
//     the layers into the struct, converting each text with Text, and names
//     the key of a value it cannot convert. File.Decode gives the values
//     YAML's way (numbers, booleans, null), for definitions checked by their
//     own rules, such as functions.
//   - Nothing here checks a value's meaning (a URL, a positive duration):
//     the packages that use a setting do, each naming the key, and the
//     caller maps a key back to its line with File.Where.
//   - Merge keys ("<<: *base") are applied: the mapping's own keys win, then
//     the merged mappings in the order written.
//
// The text forms settings take are here too, so that every setting reads
// one way: durations with days ("7d", "1d12h"), sizes ("32MiB", "512KB")
// and permission bits in octal ("0750").
//
// A File is not changed once Parse returns it and is safe to share. The
// package knows nothing of hopper's settings: cmd/hopper and functions
// bring their own rules.
package yamlconf
