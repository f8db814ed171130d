# An expired exception fails the gate: the risk was accepted until a date that has passed.
package tfgov.rules.exceptions

import rego.v1

deny contains msg if {
	some e in input.exceptions.expired
	msg := sprintf("exception %s for %s expired on %s (%s, owner %s): renew it or fix the finding", [e.id, e.package, e.expires, e.where, e.owner])
}
