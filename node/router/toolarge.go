package router

import (
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// A forwarded call whose reply is over a gRPC message size limit — a large embeddings batch
// from a peer whose server.grpc_max_message is larger than this node's, or a reply over the
// peer's own send limit — fails with RESOURCE_EXHAUSTED, the code a full queue answers with.
// Unlike a busy peer, every node would give the same reply and fail the same way, so the
// router tries no other node and answers OUT_OF_RANGE: a request over a limit, whose message
// names the key (HTTP 413, as wire maps it). Not RESOURCE_EXHAUSTED: gRPC clients and OpenAI's
// SDKs (which see 503 and a Retry-After) would retry a request that cannot succeed.

// tooLargeError is a forward that failed on a message size limit.
type tooLargeError struct {
	peer string
	err  error
}

func (e *tooLargeError) Error() string { return e.GRPCStatus().Message() }
func (e *tooLargeError) Unwrap() error { return e.err }

// GRPCStatus is the client's answer: OUT_OF_RANGE, naming the key that sets the limit.
func (e *tooLargeError) GRPCStatus() *status.Status {
	return status.Newf(codes.OutOfRange, "the reply of node %s, or the request to it, is over the gRPC message size limit (%s): "+
		"ask for less in one request (fewer inputs), or raise server.grpc_max_message (env SYN4PSE_SERVER_GRPC_MAX_MESSAGE) "+
		"on this node and on the nodes that serve the model", e.peer, status.Convert(e.err).Message())
}

// OverSizeLimit tells whether err is gRPC refusing a message over a size limit.
//
// gRPC marks these with nothing but their text: they are status errors built with
// status.Errorf(codes.ResourceExhausted, ...), no details, no error type, and come either from
// this side of the call (this node's receive limit on the peer's reply, its send limit on the
// request) or from the peer as its status (its send limit on the reply, its receive limit on
// the request), through the same Recv. grpc/grpc#10612, which chose RESOURCE_EXHAUSTED for size
// limits, left clients that must tell it from overload to check the text. All the texts of
// google.golang.org/grpc (v1.85) share "larger than max":
//   - rpc_util.go, (*parser).recvMsg: "grpc: received message larger than max (%d vs. %d)",
//     and "... larger than max length allowed on current machine";
//   - rpc_util.go, decompress and recvAndDecompress: "grpc: message after decompression larger
//     than max", "grpc: received message after decompression larger than max";
//   - stream.go, (*clientStream).SendMsg, (*addrConnStream).SendMsg and
//     (*serverStream).SendMsg: "trying to send message larger than max (%d vs. %d)".
//
// node/limits.go's messageSizeLog uses it on the server side.
func OverSizeLimit(err error) bool {
	if err == nil {
		return false
	}
	st, ok := status.FromError(err)
	return ok && st.Code() == codes.ResourceExhausted && strings.Contains(st.Message(), "larger than max")
}
