# Image names follow the organisation's rule (params.naming_rule, a regular expression).
package tfgov.rules.naming

import rego.v1

deny contains msg if {
	not regex.match(data.tfgov.params.naming_rule, input.config.image.name)
	msg := concat("", ["image name \"", input.config.image.name, "\" breaks the naming rule ", data.tfgov.params.naming_rule])
}
