# The base is pinned by digest and comes from an allowed registry. (The central base's own
# pipeline, base-image, builds on scratch: nothing to pin.)
package tfgov.rules.base

import rego.v1

on_a_base if input.config.base.image != "scratch"

deny contains msg if {
	on_a_base
	not input.image.base.digest
	msg := sprintf("the base %s is not pinned by digest", [input.config.base.image])
}

deny contains msg if {
	on_a_base
	host := split(input.config.base.image, "/")[0]
	not host in {h | some h in input.config.base.allowed_registries}
	allowed := concat(", ", input.config.base.allowed_registries)
	msg := concat("", ["the base comes from ", host, ", which is not an allowed registry (", allowed, ")"])
}
