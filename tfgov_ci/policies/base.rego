# The base is pinned by digest and comes from an allowed registry.
package tfgov.rules.base

import rego.v1

deny contains msg if {
	not input.image.base.digest
	msg := sprintf("the base %s is not pinned by digest", [input.config.base.image])
}

deny contains msg if {
	host := split(input.config.base.image, "/")[0]
	not host in {h | some h in input.config.base.allowed_registries}
	allowed := concat(", ", input.config.base.allowed_registries)
	msg := concat("", ["the base comes from ", host, ", which is not an allowed registry (", allowed, ")"])
}
