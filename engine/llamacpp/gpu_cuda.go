//go:build cuda

package llamacpp

func init() { requiredGPU = append(requiredGPU, "cuda") }
