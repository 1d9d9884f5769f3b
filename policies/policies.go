// Package policies embeds the policy data the service ships with: the Casbin
// model, the permission catalog, the role templates, the demo tenant and the
// decision fixtures. It lives beside the data because go:embed cannot reach
// parent directories; internal/bundle parses it.
package policies

import "embed"

// FS holds model.conf, catalog.yaml, templates/*.yaml, demo/*.yaml and
// fixtures/*.yaml.
//
//go:embed model.conf catalog.yaml templates/*.yaml demo/*.yaml fixtures/*.yaml
var FS embed.FS
