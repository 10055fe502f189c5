package api

import (
	"google.golang.org/grpc"

	"github.com/ekisa-team/syn4pse/node/api/speech"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// The speech methods are package speech's; InferenceService serves them so that gRPC registers
// one inference service, and hands the voice pipeline its chat.

// Speech is the speech service over this service's models, router and limits. It is made per
// call: the node sets Router after the servers are built.
func (s *InferenceService) Speech() *speech.Service {
	return &speech.Service{Models: s.Models, NodeID: s.NodeID, Router: s.Router, MaxAudio: s.MaxAudio, Chat: s.StreamChat}
}

// Transcribe implements pb.InferenceServiceServer.
func (s *InferenceService) Transcribe(stream grpc.BidiStreamingServer[pb.TranscribeRequest, pb.TranscribeResponse]) error {
	return s.Speech().Transcribe(stream)
}

// Synthesize implements pb.InferenceServiceServer.
func (s *InferenceService) Synthesize(req *pb.SynthesizeRequest, stream grpc.ServerStreamingServer[pb.SynthesizeResponse]) error {
	return s.Speech().Synthesize(req, stream)
}

// Converse implements pb.InferenceServiceServer.
func (s *InferenceService) Converse(stream grpc.BidiStreamingServer[pb.ConverseRequest, pb.ConverseResponse]) error {
	return s.Speech().Converse(stream)
}
