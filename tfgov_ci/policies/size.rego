# The image is no larger than params.max_image_mb (compressed, all layers).
package tfgov.rules.size

import rego.v1

deny contains msg if {
	limit := data.tfgov.params.max_image_mb * 1000000
	input.image.size > limit
	msg := sprintf("the image is %v MB, above the limit of %v MB", [round(input.image.size / 1000000), data.tfgov.params.max_image_mb])
}
