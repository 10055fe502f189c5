//go:build vulkan

package llamacpp

func init() { requiredGPU = append(requiredGPU, "vulkan") }
