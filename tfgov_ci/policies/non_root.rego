# The image must not run as root.
package tfgov.rules.non_root

import rego.v1

root_users := {"", "root", "0", "root:root", "0:0"}

deny contains msg if {
	user := object.get(input.image.config, "User", "")
	root_users[user]
	msg := concat("", ["the image runs as root (User \"", user, "\"): set app.user to a non-root user"])
}
