# Every required label is present and not empty (params.required_labels).
package tfgov.rules.labels

import rego.v1

deny contains msg if {
	some label in data.tfgov.params.required_labels
	object.get(input.image.labels, label, "") == ""
	msg := sprintf("required label %s is missing", [label])
}
