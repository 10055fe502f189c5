package llamacpp

// requiredGPU lists the GPU backends this build requires; the files gpu_<backend>.go add to it
// under their build tag (go build -tags cuda). Every backend is a library loaded at run time,
// so a tag changes no compiled code: it makes the node refuse to start without that library,
// rather than run on the CPU unnoticed.
var requiredGPU []string
