package main

import (
	"regexp"
	"strings"
	"testing"

	"github.com/eddybroker/eddy/sdk/plugin/plugintest"
)

// TestPluginCommands registers the example filter with `eddy plugin add`,
// binds it to a topic, produces through it, inspects it, and removes it
// once no topic binds it.
func TestPluginCommands(t *testing.T) {
	wasm := plugintest.BuildGo(t, "../../examples/plugins/filter")
	p := startEddy(t, t.TempDir())
	eddy := func(stdin string, args ...string) (string, error) {
		t.Helper()
		return run(t, stdin, append(args, "--brokers", p.kafka, "--transport", "tcp", "--admin", p.admin)...)
	}
	must := func(stdin string, args ...string) string {
		t.Helper()
		out, err := eddy(stdin, args...)
		if err != nil {
			t.Fatalf("eddy %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return out
	}
	out := must("", "plugin", "add", wasm, "--name", "filter")
	ref := regexp.MustCompile(`filter@sha256:[0-9a-f]{64}`).FindString(out)
	if ref == "" {
		t.Fatalf("add printed no reference:\n%s", out)
	}
	if out, err := eddy("", "plugin", "add", "/etc/hostname", "--name", "junk"); err == nil || !strings.Contains(out, "invalid") {
		t.Fatalf("a file that is not WebAssembly was accepted: %v\n%s", err, out)
	}
	if out := must("", "plugin", "list"); !strings.Contains(out, "filter") || !strings.Contains(out, "transform") || !strings.Contains(out, "healthy") {
		t.Fatalf("list:\n%s", out)
	}
	must("", "topic", "create", "app", "--partitions", "1", "--config", "plugin.produce.transforms="+ref)
	must(`{"level":"info","msg":"kept","password":"hunter2"}`+"\n"+`{"level":"debug","msg":"dropped"}`+"\n", "produce", "app", "--partition", "0")
	if out := must("", "consume", "app", "--partition", "0"); out != `{"level":"info","msg":"kept","password":"***"}`+"\n" {
		t.Fatalf("consumed through the filter: %q", out)
	}
	show := must("", "plugin", "show", "filter")
	for _, want := range []string{"TOPICS      app", "STATE       healthy", "CALLS       1 (2 records"} {
		if !strings.Contains(show, want) {
			t.Fatalf("show lacks %q:\n%s", want, show)
		}
	}
	if out, err := eddy("", "plugin", "remove", "filter"); err == nil || !strings.Contains(out, "bound by topic(s) app") {
		t.Fatalf("removing a bound plugin: %v\n%s", err, out)
	}
	must("", "topic", "alter", "app", "--config", "plugin.produce.transforms=")
	must("", "plugin", "remove", "filter")
	if out := must("", "plugin", "list"); strings.Contains(out, "filter") {
		t.Fatalf("removed plugin still listed:\n%s", out)
	}
	if out, err := eddy("", "plugin", "show", "filter"); err == nil || !strings.Contains(out, "not registered") {
		t.Fatalf("show of a removed plugin: %v\n%s", err, out)
	}
}
