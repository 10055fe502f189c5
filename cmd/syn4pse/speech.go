package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"

	"github.com/ekisa-team/syn4pse/internal/durable"
	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

// audioChunkBytes is the size of the pieces transcribe sends a file in.
const audioChunkBytes = 64 << 10

func newTranscribeCmd() *cobra.Command {
	var (
		model, language string
		partial         bool
	)
	cmd := &cobra.Command{
		Use:   "transcribe FILE",
		Short: "Turn speech into text: a WAV, MP3 or FLAC file, or - for stdin",
		Long: `Transcribe an audio file with a speech-to-text model of the mesh.

  syn4pse transcribe talk.wav                      the first stt model the node has
  syn4pse transcribe talk.mp3 --model pocketsphinx
  arecord -f S16_LE -r 16000 | syn4pse transcribe -

The text is printed one utterance per line as it is heard; --partial also shows the
hypothesis of the utterance in progress (on stderr).`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) != 1 {
				return usageError{errors.New("transcribe needs one FILE (or - for stdin)")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			in, err := openInput(cmd, args[0])
			if err != nil {
				return err
			}
			defer in.Close()
			conn, err := dial(cmd)
			if err != nil {
				return err
			}
			defer conn.Close()
			if model == "" {
				if model, err = firstModel(cmd.Context(), conn, pb.Modality_MODALITY_SPEECH_TO_TEXT); err != nil {
					return err
				}
			}
			cfg := &pb.TranscribeConfig{Model: model, Language: language, Partial: partial}
			return transcribe(cmd, conn, cfg, in)
		},
	}
	cmd.Flags().StringVarP(&model, "model", "m", "", "speech-to-text model (default: the first one the node lists)")
	cmd.Flags().StringVar(&language, "language", "", "language of the speech, e.g. en")
	cmd.Flags().BoolVar(&partial, "partial", false, "show the hypothesis of the utterance in progress on stderr")
	return cmd
}

func openInput(cmd *cobra.Command, name string) (io.ReadCloser, error) {
	if name == "-" {
		return io.NopCloser(cmd.InOrStdin()), nil
	}
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("open the audio: %w", err)
	}
	return f, nil
}

// firstModel names the first model of a modality the node lists, loaded or on disk, else the
// first one its mesh peers announce.
func firstModel(ctx context.Context, conn *grpc.ClientConn, modality pb.Modality) (string, error) {
	res, err := pb.NewModelServiceClient(conn).ListModels(ctx, &pb.ListModelsRequest{})
	if err != nil {
		return "", rpcError(conn.Target(), err)
	}
	for _, m := range res.GetModels() {
		if m.GetModality() == modality && m.GetState() != pb.ModelState_MODEL_STATE_UNAVAILABLE {
			return m.GetName(), nil
		}
	}
	// None here: one that a peer of the mesh announces (the node routes the request to it).
	if peers, err := pb.NewNodeServiceClient(conn).ListPeers(ctx, &pb.ListPeersRequest{}); err == nil {
		for _, p := range peers.GetPeers() {
			for _, m := range p.GetCapability().GetModels() {
				if m.GetModality() == modality {
					return m.GetName(), nil
				}
			}
		}
	}
	return "", fmt.Errorf("the node has no %s model: declare one in syn4pse.toml (see its [backends.%s.*] examples), or pass --model", kindName(modality), kindName(modality))
}

// transcribe streams in to the node and prints the utterances as they come.
func transcribe(cmd *cobra.Command, conn *grpc.ClientConn, cfg *pb.TranscribeConfig, in io.Reader) error {
	ctx, cancel := context.WithCancel(cmd.Context())
	defer cancel()
	stream, err := pb.NewInferenceServiceClient(conn).Transcribe(ctx)
	if err != nil {
		return rpcError(conn.Target(), err)
	}
	if err := stream.Send(&pb.TranscribeRequest{Config: cfg}); err != nil {
		return rpcError(conn.Target(), err)
	}
	sent := make(chan error, 1)
	go func() { sent <- sendAudio(stream, in) }()
	out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			if sendErr := <-sent; sendErr != nil {
				return sendErr
			}
			return rpcError(conn.Target(), err)
		}
		switch {
		case ev.GetPartial() != "":
			fmt.Fprintf(errOut, "\r\033[K%s", ev.GetPartial())
		case ev.GetSegment() != nil:
			if cfg.GetPartial() {
				fmt.Fprint(errOut, "\r\033[K")
			}
			fmt.Fprintln(out, ev.GetSegment().GetText())
		}
	}
}

// sendAudio sends in in pieces, then closes the send side: the end of the audio.
func sendAudio(stream grpc.BidiStreamingClient[pb.TranscribeRequest, pb.TranscribeResponse], in io.Reader) error {
	buf := make([]byte, audioChunkBytes)
	for {
		n, err := in.Read(buf)
		if n > 0 {
			if sendErr := stream.Send(&pb.TranscribeRequest{Audio: append([]byte(nil), buf[:n]...)}); sendErr != nil {
				return nil // the node ended the call; Recv says why
			}
		}
		if errors.Is(err, io.EOF) {
			return stream.CloseSend()
		}
		if err != nil {
			return fmt.Errorf("read the audio: %w", err)
		}
	}
}

func newSpeakCmd() *cobra.Command {
	var (
		model, voice, output, format string
		speed                        float32
	)
	cmd := &cobra.Command{
		Use:   "speak TEXT...",
		Short: "Turn text into speech, to a file or to stdout",
		Long: `Speak text with a text-to-speech model of the mesh.

  syn4pse speak "Hello there" -o hello.wav           format from the extension: wav, flac, mp3, opus, pcm
  syn4pse speak "Hello there" | aplay                WAV to stdout, streamed sentence by sentence
  syn4pse speak --model espeak --voice es "Hola, ¿qué tal?" -o hola.mp3
  echo "Long text" | syn4pse speak -                 the text from stdin`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) == 0 {
				return usageError{errors.New("speak needs the TEXT to say (or - for stdin)")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			text := strings.Join(args, " ")
			if text == "-" {
				b, err := io.ReadAll(cmd.InOrStdin())
				if err != nil {
					return err
				}
				text = string(b)
			}
			if format == "" {
				format = formatFromName(output)
			}
			if output == "" && isTerminal(cmd.OutOrStdout()) {
				return usageError{errors.New("speak writes audio: give -o FILE, or pipe stdout to a player (| aplay)")}
			}
			conn, err := dial(cmd)
			if err != nil {
				return err
			}
			defer conn.Close()
			if model == "" {
				if model, err = firstModel(cmd.Context(), conn, pb.Modality_MODALITY_TEXT_TO_SPEECH); err != nil {
					return err
				}
			}
			req := &pb.SynthesizeRequest{Model: model, Input: text, Voice: voice, Format: format, Speed: speed}
			if output == "" {
				return speak(cmd.Context(), conn, req, cmd.OutOrStdout())
			}
			// A stopped or failed synthesis leaves no half-written file.
			return durable.Write(output, 0o644, func(f *os.File) error {
				return speak(cmd.Context(), conn, req, f)
			})
		},
	}
	cmd.Flags().StringVarP(&model, "model", "m", "", "text-to-speech model (default: the first one the node lists)")
	cmd.Flags().StringVar(&voice, "voice", "", "voice (syn4pse models list shows each model's voices); default: the model's")
	cmd.Flags().StringVarP(&output, "output", "o", "", "write the audio to this file (default: stdout)")
	cmd.Flags().StringVar(&format, "format", "", "wav, flac, mp3, opus or pcm (default: from the file's extension, else wav)")
	cmd.Flags().Float32Var(&speed, "speed", 1, "speaking rate, 0.25 to 4")
	return cmd
}

// formatFromName is the audio format a file name's extension implies, wav by default.
func formatFromName(name string) string {
	switch ext := strings.ToLower(strings.TrimPrefix(filepath.Ext(name), ".")); ext {
	case "flac", "mp3", "opus", "pcm":
		return ext
	case "ogg":
		return "opus"
	case "raw":
		return "pcm"
	}
	return "wav"
}

// speak writes the audio to w as it arrives.
func speak(ctx context.Context, conn *grpc.ClientConn, req *pb.SynthesizeRequest, w io.Writer) error {
	stream, err := pb.NewInferenceServiceClient(conn).Synthesize(ctx, req)
	if err != nil {
		return rpcError(conn.Target(), err)
	}
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return rpcError(conn.Target(), err)
		}
		if chunk := ev.GetAudio(); chunk != nil {
			if _, err := w.Write(chunk.GetData()); err != nil {
				return err
			}
		}
	}
}

// isTerminal says whether w is a character device (a terminal), where audio bytes make no sense.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
