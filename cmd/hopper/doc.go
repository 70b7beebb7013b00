// Command hopper is a maildir-style job queue in front of Ollama: jobs are
// JSON files in a spool directory, run on one or more Ollama targets
// (several slots each), or on the hosts of a cluster. Each subcommand is a
// thin shell over a package: serve assembles the spool, runner, hooks,
// functions, HTTP front and cluster from one configuration, which
// config.go only reads and each package validates. See README.md for
// usage and configs/hopper.yaml for the settings.
package main
