// health-check reads WorkerGroup objects (a JSON array, as the apiserver returns them)
// and prints, for each, what Argo CD and Flux make of it, with their own libraries:
// the Argo CD health script run by github.com/yuin/gopher-lua (the interpreter Argo CD
// runs health scripts with, the object bound to the global `obj`), and the status
// computed by sigs.k8s.io/cli-utils/pkg/kstatus (what Flux's health checks use).
//
// Usage: health-check <health.lua> <objects.json>
// Output: a JSON array of {"name", "argo": {"status", "message"}, "kstatus": {...}}.
package main

import (
	"encoding/json"
	"fmt"
	"os"

	lua "github.com/yuin/gopher-lua"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

type verdict struct {
	Status  string `json:"status"`
	Message string `json:"message"`
}

type result struct {
	Name    string  `json:"name"`
	Argo    verdict `json:"argo"`
	Kstatus verdict `json:"kstatus"`
}

// toLua turns decoded JSON into Lua values: objects and arrays become tables (arrays
// 1-based), null becomes nil.
func toLua(L *lua.LState, v interface{}) lua.LValue {
	switch t := v.(type) {
	case map[string]interface{}:
		tbl := L.NewTable()
		for k, x := range t {
			tbl.RawSetString(k, toLua(L, x))
		}
		return tbl
	case []interface{}:
		tbl := L.NewTable()
		for _, x := range t {
			tbl.Append(toLua(L, x))
		}
		return tbl
	case string:
		return lua.LString(t)
	case float64:
		return lua.LNumber(t)
	case int64:
		return lua.LNumber(t)
	case bool:
		return lua.LBool(t)
	default:
		return lua.LNil
	}
}

func argo(script string, obj map[string]interface{}) (verdict, error) {
	L := lua.NewState()
	defer L.Close()
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoString(script); err != nil {
		return verdict{}, err
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		return verdict{}, fmt.Errorf("the script returned %s, not a table", L.Get(-1).Type())
	}
	return verdict{
		Status:  lua.LVAsString(ret.RawGetString("status")),
		Message: lua.LVAsString(ret.RawGetString("message")),
	}, nil
}

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: health-check <health.lua> <objects.json>")
		os.Exit(2)
	}
	script, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	raw, err := os.ReadFile(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	var objects []json.RawMessage
	if err := json.Unmarshal(raw, &objects); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out := []result{}
	for _, one := range objects {
		// Kubernetes' own decoding: integers stay int64, as kstatus expects.
		u := &unstructured.Unstructured{}
		if err := u.UnmarshalJSON(one); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		a, err := argo(string(script), u.Object)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", u.GetName(), err)
			os.Exit(1)
		}
		k, err := status.Compute(u)
		if err != nil {
			fmt.Fprintf(os.Stderr, "%s: %v\n", u.GetName(), err)
			os.Exit(1)
		}
		out = append(out, result{
			Name:    u.GetName(),
			Argo:    a,
			Kstatus: verdict{Status: k.Status.String(), Message: k.Message},
		})
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	if err := enc.Encode(out); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
