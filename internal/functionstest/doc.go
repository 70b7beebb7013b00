// Package functionstest defines functions for tests: [Label], a function
// whose answer must be one of three labels, and [Registry], which loads
// definitions as a functions_dir holds them.
package functionstest
