# No moving "latest" tag: images are referred to by commit, git tag or digest.
package tfgov.rules.no_latest

import rego.v1

deny contains msg if {
	some tag in input.image.tags
	tag == "latest"
	msg := "the image would be tagged 'latest': refer to images by commit, git tag or digest"
}
