package llamacpp

/*
#include <stdlib.h>
#include "llama.h"
*/
import "C"

import (
	"errors"
	"unsafe"
)

// ChatMessage is one turn for ApplyBuiltinTemplate.
type ChatMessage struct {
	Role, Content string
}

// ErrUnknownTemplate means llama.cpp recognises neither the template text nor the format name.
var ErrUnknownTemplate = errors.New("chat template not recognised by llama.cpp")

// ApplyBuiltinTemplate formats messages with llama.cpp's built-in chat formats, which recognise
// the common families (chatml, llama3, gemma, mistral, phi3, ...) from a template's text or a
// format name, without a Jinja engine and without tools.
func ApplyBuiltinTemplate(tmpl string, messages []ChatMessage, addAssistant bool) (string, error) {
	ctmpl := C.CString(tmpl)
	defer C.free(unsafe.Pointer(ctmpl))

	// The C strings live until the call returns; one allocation holds them all.
	cmsgs := unsafe.Slice((*C.struct_llama_chat_message)(C.malloc(C.size_t(max(len(messages), 1))*C.size_t(unsafe.Sizeof(C.struct_llama_chat_message{})))), len(messages))
	defer C.free(unsafe.Pointer(unsafe.SliceData(cmsgs)))
	total := 0
	for i, msg := range messages {
		cmsgs[i].role = C.CString(msg.Role)
		cmsgs[i].content = C.CString(msg.Content)
		total += len(msg.Role) + len(msg.Content)
	}
	defer func() {
		for i := range cmsgs {
			C.free(unsafe.Pointer(cmsgs[i].role))
			C.free(unsafe.Pointer(cmsgs[i].content))
		}
	}()

	var msgPtr *C.struct_llama_chat_message
	if len(cmsgs) > 0 {
		msgPtr = &cmsgs[0]
	}
	buf := make([]byte, 2*total+256)
	for {
		n := int(C.llama_chat_apply_template(ctmpl, msgPtr, C.size_t(len(cmsgs)), C.bool(addAssistant), (*C.char)(unsafe.Pointer(&buf[0])), C.int32_t(len(buf))))
		if n < 0 {
			return "", ErrUnknownTemplate
		}
		if n <= len(buf) {
			return string(buf[:n]), nil
		}
		buf = make([]byte, n)
	}
}
