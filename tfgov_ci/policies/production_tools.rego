# A production image carries no shell and no package manager (params.production, default true).
# An image that is not one (the CI tools image: production false) may carry only the ones its
# policy names (params.allowed_tools); every other forbidden package still denies it.
package tfgov.rules.production_tools

import rego.v1

deny contains msg if {
	data.tfgov.params.production
	some p in input.sbom.components
	p.name in data.tfgov.params.forbidden_packages
	msg := sprintf("%s %s (%s) is in a production image: no shells or package managers", [p.name, p.version, p.type])
}

deny contains msg if {
	not data.tfgov.params.production
	some p in input.sbom.components
	p.name in data.tfgov.params.forbidden_packages
	not p.name in data.tfgov.params.allowed_tools
	msg := sprintf("%s %s (%s) is not in allowed_tools of this non-production image", [p.name, p.version, p.type])
}
