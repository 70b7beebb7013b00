// Package jsonscan walks JSON text in place, without decoding it into fresh
// values: where whitespace, a string or a whole value ends, and the four hex
// digits of a \u escape. It expects text that json.Valid accepted; on other
// text it returns an offset no further than the text's end and does not
// panic. The stream reader in ollama and the front's job rewriting and
// idempotency keys in httpfront read JSON with it.
//
// Any package may import it: it imports nothing of hopper's.
package jsonscan
