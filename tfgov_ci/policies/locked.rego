# The image holds what the lock and the base say, and nothing else (the sbom stage's drift
# check: unlocked or missing packages, other versions, files no package owns).
package tfgov.rules.locked

import rego.v1

deny contains msg if {
	some d in input.drift
	msg := sprintf("drift (%s): %s", [d.kind, d.message])
}
