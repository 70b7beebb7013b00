package yamlconf_test

import (
	"fmt"
	"reflect"
	"time"

	"github.com/hopper-dev/hopper/internal/yamlconf"
)

func ExampleFile_Settings() {
	type Config struct {
		MaxWait time.Duration `yaml:"max_wait"`
		Hooks   struct {
			Webhooks []struct {
				URL string `yaml:"url"`
			} `yaml:"webhooks"`
		} `yaml:"hooks"`
	}
	file, err := yamlconf.Parse("hopper.yaml", []byte("max_wait: 1d\nhooks:\n  webhooks:\n    - url: ftp://b\n    - ulr: https://c\n"))
	if err != nil {
		fmt.Println(err)
		return
	}
	_, err = file.Settings(reflect.TypeFor[Config](), "yaml")
	fmt.Println(err)
	// A package that checks the value names its key; the file says where it is.
	fmt.Println(file.Where("hooks.webhooks[0].url"))
	// Output:
	// hopper.yaml:5: unknown key "hooks.webhooks[1].ulr" (did you mean "hooks.webhooks[1].url"?)
	// hopper.yaml:4
}
