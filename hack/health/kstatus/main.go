// Command kstatus-check prints what Flux's health library (kstatus, sigs.k8s.io/cli-utils)
// makes of one Kubernetes object, so the tests can prove the operator's conditions read right
// to Flux without running Flux.
//
// It reads the object as JSON on stdin and prints one JSON line: {"status": ..., "message": ...}.
package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"sigs.k8s.io/cli-utils/pkg/kstatus/status"
)

func main() {
	raw, err := io.ReadAll(os.Stdin)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus-check: reading stdin:", err)
		os.Exit(2)
	}
	obj := &unstructured.Unstructured{}
	if err := obj.UnmarshalJSON(raw); err != nil {
		fmt.Fprintln(os.Stderr, "kstatus-check: not a Kubernetes object:", err)
		os.Exit(2)
	}
	res, err := status.Compute(obj)
	if err != nil {
		fmt.Fprintln(os.Stderr, "kstatus-check: compute:", err)
		os.Exit(1)
	}
	out, _ := json.Marshal(map[string]string{"status": res.Status.String(), "message": res.Message})
	fmt.Println(string(out))
}
