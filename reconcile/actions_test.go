package reconcile_test

import (
	"bytes"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"

	r "netlab/reconcile"
)

// actionExamples holds one value of every kind of action, each naming
// different namespaces in each of its fields, so that a Namespaces that
// forgets one is seen.
func actionExamples() []r.Action {
	k := func(ns, name string) r.InterfaceKey { return r.InterfaceKey{NS: ns, Name: name} }
	route := r.Route{RouteKey: r.RouteKey{NS: "n1", To: netip.MustParsePrefix("10.9.0.0/24")}, Dev: "eth0"}
	addr := r.AddrKey{InterfaceKey: k("n1", "eth0"), Prefix: netip.MustParsePrefix("10.0.0.2/24")}
	proc := r.Process{ProcKey: r.ProcKey{NS: "n1", Command: "sleep 1000"}}
	execs := r.ExecList([]string{"true"})
	return []r.Action{
		r.CreateNetns{Lab: "x", Name: "n1"},
		r.SetIPv6{Name: "n1", On: true},
		r.DeleteNetns{Lab: "x", Name: "n1", Takes: []r.InterfaceKey{k("n2", "v1")}},
		r.CreateBridge{Lab: "x", InterfaceKey: k(r.Host, "br0")},
		r.CreateVeth{Lab: "x", Main: r.VethEnd{InterfaceKey: k("n2", "v1"), Master: "br0"}, Peer: r.VethEnd{InterfaceKey: k("n1", "eth0")}},
		r.DeleteInterface{InterfaceKey: k("n1", "eth0"), InterfaceKind: r.KindVeth, Peer: k("n2", "v1")},
		r.MarkInterface{Lab: "x", InterfaceKey: k("n1", "eth0")},
		r.SetMaster{InterfaceKey: k("n1", "eth0"), Master: "br0"},
		r.SetHairpin{InterfaceKey: k("n1", "eth0"), On: true},
		r.SetMTU{InterfaceKey: k("n1", "eth0"), MTU: 9000, Old: 1500},
		r.SetMAC{InterfaceKey: k("n1", "eth0"), MAC: "02:42:ac:11:00:02", Old: "02:42:ac:11:00:03"},
		r.SetUp{InterfaceKey: k("n1", "eth0")},
		r.SetSnooping{InterfaceKey: k(r.Host, "br0"), On: true},
		r.AddAddr{AddrKey: addr},
		r.DeleteAddr{AddrKey: addr},
		r.ReplaceRoute{Route: route},
		r.DeleteRoute{Route: route},
		r.SetSysctl{Lab: "x", SysctlKey: r.SysctlKey{NS: "n1", Path: "net/ipv4/ip_forward"}, Value: "1"},
		r.ReplaceTable{Lab: "x", Table: &r.Table{NS: "n1", Name: r.TableName("x")}},
		r.DeleteTable{NS: "n1", Name: r.TableName("x")},
		r.WriteFile{FileKey: r.FileKey{NS: "n1", Name: "hosts"}, Content: "# netlab:x\n"},
		r.DeleteFile{FileKey: r.FileKey{NS: "n1", Name: "hosts"}},
		r.RunExec{Lab: "x", NS: "n1", List: execs},
		r.ForgetExec{Lab: "x", NS: "n1", Gone: execs},
		r.StartProcess{Lab: "x", Process: proc},
		r.StopProcess{Lab: "x", Process: proc},
		r.CreateUTS{Lab: "x", NS: "n1", Hostname: "0123456789ab"},
		r.SetHostname{Lab: "x", NS: "n1", Hostname: "0123456789ab"},
		r.DeleteUTS{Lab: "x", NS: "n1"},
		r.ReplaceQdisc{Qdisc: r.Qdisc{InterfaceKey: k("n1", "eth0"), Rate: 10_000_000, Burst: 32 << 10, TbfLimit: 64 << 10}, Also: []r.InterfaceKey{k("n2", "v1")}},
		r.DeleteQdisc{Old: r.Qdisc{InterfaceKey: k("n1", "eth0"), Rate: 10_000_000, Burst: 32 << 10, TbfLimit: 64 << 10}, Also: []r.InterfaceKey{k("n2", "v1")}},
		r.SetDown{InterfaceKey: k("n1", "eth0")},
	}
}

// actionTypes are the types of package reconcile that are actions, read from
// its source: those with an ApplyTo method.
func actionTypes(t *testing.T) []string {
	fset := token.NewFileSet()
	pkgs, err := parser.ParseDir(fset, ".", func(fi fs.FileInfo) bool {
		return !strings.HasSuffix(fi.Name(), "_test.go")
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, f := range pkgs["reconcile"].Files {
		for _, decl := range f.Decls {
			fn, ok := decl.(*ast.FuncDecl)
			if !ok || fn.Recv == nil || fn.Name.Name != "ApplyTo" {
				continue
			}
			if id, ok := fn.Recv.List[0].Type.(*ast.Ident); ok {
				out = append(out, id.Name)
			}
		}
	}
	slices.Sort(out)
	return out
}

// TestEveryActionHasAnExample: every kind of action is in actionExamples, and
// each renders as a plan line, JSON and commands and names the namespaces it
// changes (every NS field it carries: Verify reads only those again). The
// compiler already refuses an action without Object, Commands, Namespaces or
// ApplyTo, and a driver (kernel, fake) without its Apply method.
func TestEveryActionHasAnExample(t *testing.T) {
	examples := actionExamples()
	have := map[string]bool{}
	for _, a := range examples {
		have[reflect.TypeOf(a).Name()] = true
	}
	for _, name := range actionTypes(t) {
		if !have[name] {
			t.Errorf("action %s has no example in actionExamples", name)
		}
	}
	for _, a := range examples {
		name := reflect.TypeOf(a).Name()
		if a.Object() == "" || len(a.Commands()) == 0 {
			t.Errorf("%s: object %q, commands %q: nothing to show", name, a.Object(), a.Commands())
		}
		got := a.Namespaces()
		for _, ns := range nsFields(reflect.ValueOf(a)) {
			if !slices.Contains(got, ns) {
				t.Errorf("%s: Namespaces() = %q, missing %q", name, got, ns)
			}
		}
		if len(got) == 0 {
			t.Errorf("%s: Namespaces() names none", name)
		}
	}
	plan := &r.Plan{Lab: "x", Actions: examples}
	for _, write := range []func(*bytes.Buffer) error{
		func(b *bytes.Buffer) error { return plan.WriteText(b) },
		func(b *bytes.Buffer) error { return plan.WriteJSON(b) },
		func(b *bytes.Buffer) error { return plan.WriteCommands(b) },
	} {
		var b bytes.Buffer
		if err := write(&b); err != nil {
			t.Error(err)
		}
	}
}

// nsFields are the values of the fields named NS in v, at any depth.
func nsFields(v reflect.Value) []string {
	var out []string
	switch v.Kind() {
	case reflect.Pointer:
		if !v.IsNil() {
			out = nsFields(v.Elem())
		}
	case reflect.Slice:
		for i := range v.Len() {
			out = append(out, nsFields(v.Index(i))...)
		}
	case reflect.Struct:
		for i := range v.NumField() {
			if v.Type().Field(i).Name == "NS" && v.Field(i).Kind() == reflect.String {
				out = append(out, v.Field(i).String())
			} else {
				out = append(out, nsFields(v.Field(i))...)
			}
		}
	}
	return out
}
