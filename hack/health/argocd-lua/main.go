// Command argocd-lua-health runs an Argo CD custom health script the way Argo CD does: in
// gopher-lua, with the object bound to the global `obj`, expecting a table {status, message}.
// The tests use it to check charts/modeldeploy/health/modeldeployment.lua on real objects.
//
//	argocd-lua-health SCRIPT.lua < object.json
//
// It prints one JSON line: {"status": ..., "message": ...}.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	lua "github.com/yuin/gopher-lua"
)

// toLua turns decoded JSON into Lua values as Argo CD does (objects and arrays become tables).
func toLua(L *lua.LState, v any) lua.LValue {
	switch x := v.(type) {
	case nil:
		return lua.LNil
	case bool:
		return lua.LBool(x)
	case float64:
		return lua.LNumber(x)
	case string:
		return lua.LString(x)
	case []any:
		t := L.NewTable()
		for _, item := range x {
			t.Append(toLua(L, item))
		}
		return t
	case map[string]any:
		t := L.NewTable()
		for k, item := range x {
			t.RawSetString(k, toLua(L, item))
		}
		return t
	}
	return lua.LNil
}

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: argocd-lua-health SCRIPT.lua < object.json")
		os.Exit(2)
	}
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "argocd-lua-health: reading stdin:", err)
		os.Exit(2)
	}
	var obj map[string]any
	if err := json.Unmarshal(raw, &obj); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-lua-health: not a JSON object:", err)
		os.Exit(2)
	}
	L := lua.NewState()
	defer L.Close()
	L.SetGlobal("obj", toLua(L, obj))
	if err := L.DoFile(os.Args[1]); err != nil {
		fmt.Fprintln(os.Stderr, "argocd-lua-health: script failed:", err)
		os.Exit(1)
	}
	ret, ok := L.Get(-1).(*lua.LTable)
	if !ok {
		fmt.Fprintln(os.Stderr, "argocd-lua-health: the script did not return a table")
		os.Exit(1)
	}
	out, _ := json.Marshal(map[string]string{
		"status":  lua.LVAsString(ret.RawGetString("status")),
		"message": lua.LVAsString(ret.RawGetString("message")),
	})
	fmt.Println(string(out))
}
