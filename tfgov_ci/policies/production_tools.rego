# A production image carries no shell and no package manager (params.production, default true).
package tfgov.rules.production_tools

import rego.v1

deny contains msg if {
	data.tfgov.params.production
	some p in input.sbom.components
	p.name in data.tfgov.params.forbidden_packages
	msg := sprintf("%s %s (%s) is in a production image: no shells or package managers", [p.name, p.version, p.type])
}
