// Pins gopher-lua, the Lua interpreter Argo CD embeds, for the health-script tests; the binary
// is built into ~/.cache/modeldeploy, never committed.
module modeldeploy.io/hack/health/argocd-lua

go 1.25.0

require github.com/yuin/gopher-lua v1.1.2
