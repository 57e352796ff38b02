//go:build tools

// Package tools keeps flannel's main package (the flanneld command) in this module's build list.
package tools

import _ "github.com/flannel-io/flannel"
