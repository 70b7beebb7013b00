// Package configs holds hopper's example configuration, embedded so that
// `hopper init` can write it. configs/hopper.yaml documents every setting;
// configs/functions/ holds example functions.
package configs
