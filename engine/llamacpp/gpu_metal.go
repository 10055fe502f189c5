//go:build metal

package llamacpp

func init() { requiredGPU = append(requiredGPU, "metal") }
