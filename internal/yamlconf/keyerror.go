package yamlconf

// KeyError is a package's error about one of its settings: Field is the
// key as hopper.yaml spells it ("targets[1].name"), Err what is wrong with
// its value. Each package that checks settings names its own S, so that
// its errors are a type of their own for errors.As, and says with it how
// its messages begin: "runner: max_attempts: must be at least 1".
type KeyError[S Section] struct {
	Field string
	Err   error
}

// Section is the type that tells one package's KeyError from another's.
// Section returns what its messages begin with (its name, "runner"), or ""
// when the key says enough ("cluster.listen").
type Section interface{ Section() string }

func (e *KeyError[S]) Error() string {
	var s S
	if name := s.Section(); name != "" {
		return name + ": " + e.Field + ": " + e.Err.Error()
	}
	return e.Field + ": " + e.Err.Error()
}

func (e *KeyError[S]) Unwrap() error { return e.Err }

// Setting returns the key and what is wrong with its value.
func (e *KeyError[S]) Setting() (key string, err error) { return e.Field, e.Err }
