package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"strings"

	"github.com/spf13/cobra"

	pb "github.com/ekisa-team/syn4pse/proto/syn4pse/v1"
)

func newRunCmd() *cobra.Command {
	var (
		system      string
		temperature float32
		maxTokens   int32
		seed        int64
		format      string
		verbose     bool
		images      []string
	)
	cmd := &cobra.Command{
		Use:   "run MODEL [--image FILE]... [PROMPT...]",
		Short: "Chat with a model: one answer for a prompt, or an interactive chat",
		Long: `Chat with a model served by a node.

  syn4pse run tiny "Why is the sky blue?"     one answer, streamed, then exit
  echo "Summarise this" | syn4pse run tiny    the prompt is read from stdin
  syn4pse run tiny                            interactive chat with history;
                                              /clear forgets it, /bye or Ctrl-D exits
  syn4pse run llava --image cat.png "What is this?"
                                              images go with the first prompt (PNG, JPEG,
                                              GIF, BMP; the model needs its mmproj)

Piped stdin and a PROMPT together send the PROMPT, a blank line, then stdin.`,
		Args: func(cmd *cobra.Command, args []string) error {
			if len(args) < 1 {
				return usageError{errors.New("run needs a MODEL: syn4pse run MODEL [PROMPT] (syn4pse models list shows them)")}
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			conn, err := dial(cmd)
			if err != nil {
				return err
			}
			defer conn.Close()
			c := &chatSession{
				client:  pb.NewInferenceServiceClient(conn),
				target:  conn.Target(),
				model:   args[0],
				out:     cmd.OutOrStdout(),
				errOut:  cmd.ErrOrStderr(),
				verbose: verbose,
			}
			c.sampling = &pb.SamplingParams{}
			if cmd.Flags().Changed("temperature") {
				c.sampling.Temperature = &temperature
			}
			if maxTokens > 0 {
				c.sampling.MaxTokens = &maxTokens
			}
			if cmd.Flags().Changed("seed") {
				s := uint32(seed)
				c.sampling.Seed = &s
			}
			switch format {
			case "":
			case "json":
				c.format = &pb.ResponseFormat{Type: pb.ResponseFormat_TYPE_JSON_OBJECT}
			default:
				return usageError{fmt.Errorf("--format %q: only \"json\" is supported", format)}
			}
			if system != "" {
				c.system = &pb.Message{Role: "system", Content: system}
			}
			if c.images, err = readImages(images); err != nil {
				return err
			}

			prompt := strings.Join(args[1:], " ")
			piped, err := readPipedStdin(cmd.InOrStdin())
			if err != nil {
				return err
			}
			if piped != "" {
				prompt = strings.TrimSpace(strings.Join([]string{prompt, piped}, "\n\n"))
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt)
			defer stop()
			if prompt != "" {
				return c.turn(ctx, prompt)
			}
			return c.interactive(ctx, cmd.InOrStdin())
		},
	}
	f := cmd.Flags()
	f.StringVar(&system, "system", "", "system prompt")
	f.Float32Var(&temperature, "temperature", 0.8, "sampling temperature (0 = always the most likely token)")
	f.Int32Var(&maxTokens, "max-tokens", 0, "stop after this many tokens (0 = until the model stops)")
	f.Int64Var(&seed, "seed", 0, "sampling seed, for reproducible output")
	f.StringVar(&format, "format", "", `constrain the output: "json"`)
	f.BoolVar(&verbose, "verbose", false, "print token counts and speed after each answer")
	f.StringArrayVar(&images, "image", nil, "send the image in `FILE` with the first prompt (repeat the flag for several)")
	return cmd
}

// readPipedStdin returns stdin's content when it is a pipe or a file, "" for a terminal.
func readPipedStdin(in io.Reader) (string, error) {
	f, ok := in.(*os.File)
	if !ok {
		return "", nil
	}
	fi, err := f.Stat()
	if err != nil || fi.Mode()&(os.ModeNamedPipe) == 0 && !fi.Mode().IsRegular() {
		return "", nil
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return "", fmt.Errorf("read stdin: %w", err)
	}
	return strings.TrimSpace(string(b)), nil
}

// chatSession is a conversation with one model; history grows with each turn.
type chatSession struct {
	client   pb.InferenceServiceClient
	target   string
	model    string
	sampling *pb.SamplingParams
	format   *pb.ResponseFormat
	system   *pb.Message   // sent first in every request when set
	history  []*pb.Message // the turns so far, without the system message
	images   []*pb.Media   // sent with the next prompt, then kept in the history
	out      io.Writer
	errOut   io.Writer
	verbose  bool
}

// turn sends prompt with the history, streams the answer to out and keeps both in the history.
func (c *chatSession) turn(ctx context.Context, prompt string) error {
	turns := append(c.history[:len(c.history):len(c.history)], c.userMessage(prompt))
	msgs := turns
	if c.system != nil {
		msgs = append([]*pb.Message{c.system}, turns...)
	}
	stream, err := c.client.Chat(ctx, &pb.ChatRequest{Model: c.model, Messages: msgs, Sampling: c.sampling, ResponseFormat: c.format})
	if err != nil {
		return rpcError(c.target, err)
	}
	var answer strings.Builder
	for {
		ev, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fmt.Fprintln(c.out)
			if ctx.Err() != nil {
				return nil // Ctrl-C stops the answer, not the session
			}
			return rpcError(c.target, err)
		}
		if d := ev.GetDelta(); d != nil {
			answer.WriteString(d.GetText())
			fmt.Fprint(c.out, d.GetText())
		}
		if f := ev.GetFinal(); f != nil && c.verbose {
			defer fmt.Fprintf(c.errOut, "\n[%d prompt tokens, %d generated, %.1f tokens/s, served by %s]\n",
				f.GetUsage().GetPromptTokens(), f.GetUsage().GetCompletionTokens(), f.GetTimings().GetGenerationTokensPerSecond(), f.GetServedBy())
		}
	}
	fmt.Fprintln(c.out)
	c.history = append(turns, &pb.Message{Role: "assistant", Content: answer.String()})
	c.images = nil
	return nil
}

// userMessage is prompt as a user turn, after the images still to send as parts.
func (c *chatSession) userMessage(prompt string) *pb.Message {
	msg := &pb.Message{Role: "user", Content: prompt}
	if len(c.images) == 0 {
		return msg
	}
	for _, img := range c.images {
		msg.Parts = append(msg.Parts, &pb.ContentPart{Part: &pb.ContentPart_Image{Image: img}})
	}
	msg.Parts = append(msg.Parts, &pb.ContentPart{Part: &pb.ContentPart_Text{Text: prompt}})
	return msg
}

// readImages reads the image files of --image; the node decodes them.
func readImages(paths []string) ([]*pb.Media, error) {
	var media []*pb.Media
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fmt.Errorf("--image: %w", err)
		}
		media = append(media, &pb.Media{Data: data, MimeType: http.DetectContentType(data)})
	}
	return media, nil
}

func (c *chatSession) interactive(ctx context.Context, in io.Reader) error {
	fmt.Fprintf(c.errOut, "Chatting with %s. /clear forgets the conversation, /bye or Ctrl-D exits.\n", c.model)
	scanner := bufio.NewScanner(in)
	scanner.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for {
		fmt.Fprint(c.errOut, ">>> ")
		if !scanner.Scan() {
			fmt.Fprintln(c.errOut)
			return scanner.Err()
		}
		line := strings.TrimSpace(scanner.Text())
		switch line {
		case "":
			continue
		case "/bye", "/exit", "/quit":
			return nil
		case "/clear":
			c.history = nil
			fmt.Fprintln(c.errOut, "conversation cleared")
			continue
		}
		turnCtx, cancel := signal.NotifyContext(context.WithoutCancel(ctx), os.Interrupt)
		err := c.turn(turnCtx, line)
		cancel()
		if err != nil {
			return err
		}
	}
}
