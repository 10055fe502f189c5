package node_test

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"image"
	"image/png"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/ekisa-team/syn4pse/engine/speechtest"
	"github.com/ekisa-team/syn4pse/internal/audio"
	"github.com/ekisa-team/syn4pse/internal/tinygguf"
	"github.com/ekisa-team/syn4pse/node/config"
)

// sentRequest is one request the page sent, as the fetch hook of TestDashboardPlayground
// recorded it.
type sentRequest struct {
	URL     string            `json:"url"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
}

// recordFetch wraps the page's fetch to keep each request's URL, headers and JSON body in
// window.sent, so the test reads what the page really sent.
const recordFetch = `(() => {
  window.sent = [];
  const real = window.fetch;
  window.fetch = (url, opts = {}) => {
    window.sent.push({ url: String(url), headers: Object.fromEntries(new Headers(opts.headers || {})),
      body: typeof opts.body === 'string' ? opts.body : '' });
    return real(url, opts);
  };
})()`

// lastSent is the last request the page sent to a URL holding path.
func lastSent(t *testing.T, p *page, path string) sentRequest {
	t.Helper()
	raw := eval[string](p, `JSON.stringify(window.sent.filter(r => r.url.includes(`+js(path)+`)).at(-1) || null)`)
	var r sentRequest
	if err := json.Unmarshal([]byte(raw), &r); err != nil || r.URL == "" {
		t.Fatalf("no request to %s recorded (%s): %v", path, raw, err)
	}
	return r
}

// writeWAV writes mono audio as a 16-bit PCM WAV with its sizes filled in (the node's speech
// streams with unknown sizes; Chromium's fake microphone wants a plain file), with pad seconds
// of silence before and after.
func writeWAV(t *testing.T, path string, a audio.Audio, pad float64) {
	t.Helper()
	silence := make([]float32, int(pad*float64(a.Rate)))
	samples := append(append(append([]float32{}, silence...), a.Mono().Samples...), silence...)
	b := make([]byte, 44, 44+2*len(samples))
	copy(b, "RIFF")
	binary.LittleEndian.PutUint32(b[4:], uint32(36+2*len(samples)))
	copy(b[8:], "WAVEfmt ")
	binary.LittleEndian.PutUint32(b[16:], 16)
	binary.LittleEndian.PutUint16(b[20:], 1)
	binary.LittleEndian.PutUint16(b[22:], 1)
	binary.LittleEndian.PutUint32(b[24:], uint32(a.Rate))
	binary.LittleEndian.PutUint32(b[28:], uint32(2*a.Rate))
	binary.LittleEndian.PutUint16(b[32:], 2)
	binary.LittleEndian.PutUint16(b[34:], 16)
	copy(b[36:], "data")
	binary.LittleEndian.PutUint32(b[40:], uint32(2*len(samples)))
	for _, s := range samples {
		b = binary.LittleEndian.AppendUint16(b, uint16(int16(math.Round(float64(max(-1, min(1, s)))*32767))))
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestDashboardPlayground drives the Playground's media against one real node with a vision
// LLM, a text-only one, PocketSphinx and flite: the sampling settings and the pinned node go
// out with the request; an image attached through the file input shows in the user's bubble and
// costs the image's positions in the prompt; the attach control hides for a text-only model;
// an answer is spoken into a playable <audio>; the microphone, refused, says so, and allowed
// (Chromium's fake device playing the node's own speech) shows interim words while it records
// and fills the message box with the words PocketSphinx heard; the page fits a phone and logs
// no error.
func TestDashboardPlayground(t *testing.T) {
	projector := filepath.Join(t.TempDir(), "mmproj.gguf")
	if err := tinygguf.WriteVisionProjector(projector, 4); err != nil {
		t.Fatal(err)
	}
	viewer := tinyDecl("viewer")
	viewer.Projector = projector
	audioProjector := filepath.Join(t.TempDir(), "mmproj.gguf")
	if err := tinygguf.WriteAudioProjector(audioProjector, 4); err != nil {
		t.Fatal(err)
	}
	listener := tinyDecl("listener")
	listener.Projector, listener.ContextLength = audioProjector, 4096
	n := startNode(t, viewer, tinyDecl("tiny"), listener, sttDecl("ears"), ttsDecl("voice", "flite", "kal16"))
	addr := n.HTTPAddr()
	self := nodeID(t, addr)

	// The microphone will hear the node's own voice say a sentence.
	dir := t.TempDir()
	res, wav := speak(t, addr, map[string]any{"model": "voice", "input": "Please open the door.", "response_format": "wav"})
	if res.StatusCode != http.StatusOK {
		t.Fatalf("speech: %d %s", res.StatusCode, wav)
	}
	said, err := audio.Decode(wav)
	if err != nil {
		t.Fatal(err)
	}
	// Padded so that the page transcribes the recording so far at least once while it plays.
	const pad = 1.0
	door := filepath.Join(dir, "door.wav")
	writeWAV(t, door, said, pad)
	picture := filepath.Join(dir, "picture.png")
	png, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(pngDataURL(t, 24, 16), "data:image/png;base64,"))
	if err := os.WriteFile(picture, png, 0o644); err != nil {
		t.Fatal(err)
	}

	// No --use-fake-ui-for-media-stream: it would accept every request, and the test refuses
	// one first (Browser.setPermission answers for the user instead).
	p := openDashboard(t, "http://"+addr, chromedp.Flag("use-fake-device-for-media-stream", true),
		chromedp.Flag("use-file-for-fake-audio-capture", door+"%noloop"), chromedp.Flag("autoplay-policy", "no-user-gesture-required"))
	p.do("open the Playground", chromedp.Navigate(p.base+"/#/chat"))
	p.waitFor("the LLMs in the picker, not the speech models", `[...document.querySelectorAll('#chat-model option')].map(o => o.value).sort().join() === 'listener,tiny,viewer'`)
	p.waitFor("the voice select", `!document.getElementById('chat-voice').closest('label').hidden`)
	p.do("record what the page sends", chromedp.Evaluate[chromedp.Void](recordFetch))

	// Sampling settings and a pinned node go out with a text-only question to viewer.
	pick := func(id, value string) {
		p.do("pick "+value, chromedp.Evaluate[chromedp.Void](`(() => { const s = document.getElementById(`+js(id)+`); s.value = `+js(value)+
			`; s.dispatchEvent(new Event('change')); return s.value === `+js(value)+` || (() => { throw new Error('no option ' + `+js(value)+`) })() })()`))
	}
	pick("chat-model", "viewer")
	pick("chat-node", self)
	p.do("few tokens", chromedp.Evaluate[chromedp.Void](`document.getElementById('chat-max-tokens').value = '4'`))
	p.do("open Sampling", chromedp.Click(chromedp.CSS(`#chat-sampling summary`)))
	p.do("set seed, top k and a stop", chromedp.SendKeys(chromedp.ID("chat-seed"), "7"), chromedp.SendKeys(chromedp.ID("chat-top-k"), "20"),
		chromedp.SendKeys(chromedp.ID("chat-stop-seq"), "###"))
	p.shot("sampling")
	answer := func(i int) string { return fmt.Sprintf(`document.querySelectorAll('.msg.assistant')[%d]`, i) }
	ask := func(i int, text string) (prompt float64) {
		p.do("send", chromedp.SendKeys(chromedp.ID("chat-input"), text), chromedp.Click(chromedp.ID("chat-send")))
		p.waitFor("answer done", answer(i)+`?.classList.contains('done')`)
		meta := eval[string](p, answer(i)+`.querySelector('.meta').textContent`)
		t.Logf("answer %q: %s", eval[string](p, answer(i)+`.querySelector('.text').textContent`), meta)
		if !strings.Contains(meta, "(this node)") {
			t.Errorf("meta %q: want served by this node", meta)
		}
		return eval[float64](p, `Number(`+answer(i)+`.dataset.promptTokens)`)
	}
	textOnly := ask(0, "Describe")
	sent := lastSent(t, p, "/v1/chat/completions")
	var body map[string]any
	if err := json.Unmarshal([]byte(sent.Body), &body); err != nil {
		t.Fatalf("request body %q: %v", sent.Body, err)
	}
	stops, _ := json.Marshal(body["stop"])
	if body["seed"] != 7.0 || body["top_k"] != 20.0 || string(stops) != `["###"]` || body["max_tokens"] != 4.0 || body["model"] != "viewer" {
		t.Errorf("request body %s: want seed 7, top_k 20, stop [###], max_tokens 4, model viewer", sent.Body)
	}
	for _, unset := range []string{"top_p", "min_p", "repeat_penalty", "presence_penalty", "frequency_penalty"} {
		if _, ok := body[unset]; ok {
			t.Errorf("request body %s: %s sent though the user did not set it", sent.Body, unset)
		}
	}
	if sent.Headers["syn4pse-node"] != self {
		t.Errorf("request headers %v: want Syn4pse-Node %s", sent.Headers, self)
	}

	// viewer is loaded now, and the live feed says it takes images: attach one.
	p.waitFor("the attach-image control", `!document.getElementById('chat-attach-image').hidden`)
	p.do("clear the chat", chromedp.Click(chromedp.ID("chat-clear")))
	p.do("attach a PNG", chromedp.SetUploadFiles(chromedp.ID("chat-image"), []string{picture}))
	p.waitFor("the thumbnail in the strip", `document.querySelector('#chat-attachments img.thumb')?.src.startsWith('data:image/png;base64,')`)
	p.shot("attached")
	withImage := ask(0, "Describe")
	if n := eval[int](p, `document.querySelectorAll('.msg.user img.thumb').length`); n != 1 {
		t.Errorf("%d thumbnails in the user's bubble, want 1", n)
	}
	if eval[int](p, `document.querySelectorAll('#chat-attachments .chip').length`) != 0 {
		t.Errorf("the attachment strip still holds the sent image")
	}
	if !strings.Contains(lastSent(t, p, "/v1/chat/completions").Body, `"image_url":{"url":"data:image/png;base64,`) {
		t.Errorf("the request carries no image_url part")
	}
	t.Logf("prompt tokens: %v text only, %v with the image", textOnly, withImage)
	if withImage-textOnly < tinygguf.VisionImageTokens {
		t.Errorf("prompt tokens %v with the image, %v without: want at least %d more", withImage, textOnly, tinygguf.VisionImageTokens)
	}
	p.shot("image-answer")

	// A text-only model takes no image.
	pick("chat-model", "tiny")
	p.waitFor("the attach-image control hidden", `document.getElementById('chat-attach-image').hidden && getComputedStyle(document.getElementById('chat-attach-image')).display === 'none'`)

	// Speak the answer: flite's WAV plays in the bubble.
	p.do("speak", chromedp.Click(chromedp.CSS(`.msg.assistant.done button.speak`)))
	p.waitFor("a playable answer", `(a => a && a.readyState >= 1 && a.duration > 0)(document.querySelector('.msg.assistant audio'))`)
	t.Logf("spoken answer: %v s", eval[float64](p, `document.querySelector('.msg.assistant audio').duration`))
	if !strings.Contains(lastSent(t, p, "/v1/audio/speech").Body, `"response_format":"wav"`) {
		t.Errorf("speech request: %s", lastSent(t, p, "/v1/audio/speech").Body)
	}
	p.shot("spoken")

	// The microphone: refused first, then allowed.
	origin := p.base
	permission := func(setting browser.PermissionSetting) {
		if _, err := chromedp.CallBrowser(p.ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: "microphone"}, Setting: setting, Origin: origin}); err != nil {
			t.Fatalf("set the microphone permission %s: %v", setting, err)
		}
	}
	p.waitFor("the mic button", `!document.getElementById('chat-mic').hidden`)
	permission(browser.PermissionSettingDenied)
	p.do("mic, refused", chromedp.Click(chromedp.ID("chat-mic")))
	p.waitFor("the refusal said", `document.getElementById('chat-note').textContent.includes('refused') && document.getElementById('chat-mic').dataset.state === 'idle'`)
	p.shot("mic-refused")
	permission(browser.PermissionSettingGranted)
	p.do("mic", chromedp.Click(chromedp.ID("chat-mic")))
	p.waitFor("recording", `document.getElementById('chat-mic').dataset.state === 'recording'`)
	p.shot("recording")
	// While it records, the recording so far is transcribed into the box, marked interim.
	p.waitFor("interim words", `(i => i.dataset.interim === 'true' && i.classList.contains('interim') && i.value.trim() !== '')(document.getElementById('chat-input'))`)
	interim := eval[string](p, `document.getElementById('chat-input').value`)
	interimAt := eval[string](p, `document.getElementById('chat-mic').dataset.seconds`)
	p.shot("interim")
	long := said.Duration().Seconds() + 2*pad
	p.waitFor("the whole sentence recorded", fmt.Sprintf(`Number(document.getElementById('chat-mic').dataset.seconds) >= %.2f`, long))
	p.do("stop", chromedp.Click(chromedp.ID("chat-mic")))
	p.waitFor("the transcription", `document.getElementById('chat-mic').dataset.state === 'idle'`)
	heard := eval[string](p, `document.getElementById('chat-input').value`)
	t.Logf("said %q over the fake microphone (%.1f s), heard %q (interim %q at %s s, %s interim transcriptions)", "Please open the door.", long, heard,
		interim, interimAt, eval[string](p, `document.getElementById('chat-mic').dataset.interims`))
	if eval[bool](p, `'interim' in document.getElementById('chat-input').dataset || document.getElementById('chat-input').classList.contains('interim')`) {
		t.Errorf("the final transcription is still marked interim")
	}
	// PocketSphinx hears kal16 well through the HTTP API (maxRoundTripWER); a broken capture,
	// resampler or WAV encoder in the page gives rates near 1.
	if rate, _, _ := speechtest.WER("Please open the door.", heard); rate > 0.5 {
		t.Errorf("heard %q for %q: word error rate %.2f", heard, "Please open the door.", rate)
	}
	lastSent(t, p, "/v1/audio/transcriptions")
	p.shot("transcribed")

	// A model that takes audio: a WAV file goes as an input_audio part, and the microphone's
	// recording is attached (removable) rather than transcribed.
	httpStatus(t, http.DefaultClient, "POST", "http://"+addr+"/api/models/listener/load", "", http.StatusOK)
	p.do("clear", chromedp.Evaluate[chromedp.Void](`document.getElementById('chat-input').value = ''`), chromedp.Click(chromedp.ID("chat-clear")))
	p.waitFor("listener in the picker", `[...document.querySelectorAll('#chat-model option')].some(o => o.value === 'listener')`)
	pick("chat-model", "listener")
	p.waitFor("the attach-audio control", `!document.getElementById('chat-attach-audio').hidden && document.getElementById('chat-attach-image').hidden`)
	p.do("attach the WAV", chromedp.SetUploadFiles(chromedp.ID("chat-audio"), []string{door}))
	p.waitFor("the audio chip", `document.querySelector('#chat-attachments .chip')?.textContent.includes('door.wav')`)
	if heard := ask(0, "What is said?"); heard < 700 {
		t.Errorf("prompt tokens %v with the audio: want hundreds (one 30-second window of the encoder)", heard)
	}
	if !strings.Contains(lastSent(t, p, "/v1/chat/completions").Body, `"input_audio":{"data":"UklGR`) {
		t.Errorf("the request carries no input_audio WAV part")
	}
	if !strings.Contains(eval[string](p, `document.querySelector('.msg.user').textContent`), "wav") {
		t.Errorf("the user's bubble does not show the audio")
	}
	p.do("mic", chromedp.Click(chromedp.ID("chat-mic")))
	p.waitFor("recording", `document.getElementById('chat-mic').dataset.state === 'recording' && Number(document.getElementById('chat-mic').dataset.seconds) >= 0.5`)
	p.do("stop", chromedp.Click(chromedp.ID("chat-mic")))
	p.waitFor("the recording attached", `document.querySelector('#chat-attachments .chip')?.textContent.includes('recording') && document.getElementById('chat-input').value === ''`)
	p.shot("recording-attached")
	p.do("remove it", chromedp.Click(chromedp.CSS(`#chat-attachments .chip button.remove`)))
	p.waitFor("the strip empty", `document.querySelectorAll('#chat-attachments .chip').length === 0`)

	// A phone: the playground, sampling open, is no wider than the screen.
	p.do("phone width", chromedp.EmulateViewport(390, 844))
	p.waitFor("laid out", `document.documentElement.clientWidth <= 390`)
	if w := eval[float64](p, `document.documentElement.scrollWidth - window.innerWidth`); w > 0 {
		t.Errorf("playground at phone width: %v px wider than the screen", w)
	}
	p.shot("phone")
	p.do("scroll to the message box", chromedp.Evaluate[chromedp.Void](`document.getElementById('chat-form').scrollIntoView({ block: 'end' })`))
	p.shot("phone-form")
	p.noErrors()
}

// TestDashboardPlaygroundReadsAloud: with "Read aloud" on, the chat asks for the audio chat
// (modalities text and audio, a WAV stream in the chosen voice); the answer's text streams into
// its bubble while flite's speech arrives sentence by sentence and is scheduled in Web Audio;
// the serving node and the token counts show as for a text chat.
func TestDashboardPlaygroundReadsAloud(t *testing.T) {
	n := startNode(t, tinyDecl("tiny"), ttsDecl("voice", "flite", "kal16"))
	p := openDashboard(t, "http://"+n.HTTPAddr(), chromedp.Flag("autoplay-policy", "no-user-gesture-required"))
	p.do("open the Playground", chromedp.Navigate(p.base+"/#/chat"))
	p.waitFor("the Read aloud toggle", `!document.getElementById('chat-aloud').closest('label').hidden && document.getElementById('chat-voice').value !== '' && document.getElementById('chat-model').value === 'tiny'`)
	p.do("record what the page sends", chromedp.Evaluate[chromedp.Void](recordFetch))
	p.do("read aloud, 24 tokens, seed 3", chromedp.Click(chromedp.ID("chat-aloud")),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('chat-max-tokens').value = '24'; document.getElementById('chat-seed').value = '3'`))
	p.do("send", chromedp.SendKeys(chromedp.ID("chat-input"), "Tell me a story."), chromedp.Click(chromedp.ID("chat-send")))
	answer := `document.querySelector('.msg.assistant')`
	p.waitFor("speech scheduled", answer+`?.dataset.audioChunks >= 1`)
	p.shot("reading")
	p.waitFor("the answer done", answer+`.classList.contains('done')`)
	p.shot("read")

	var got struct {
		Text, Meta                          string
		Chunks, AudioChunks, PromptTokens   int
		AudioSeconds, FirstText, FirstAudio float64
	}
	raw := eval[string](p, `(a => JSON.stringify({Text: a.querySelector('.text').textContent, Meta: a.querySelector('.meta').textContent,
		Chunks: Number(a.dataset.chunks), AudioChunks: Number(a.dataset.audioChunks), PromptTokens: Number(a.dataset.promptTokens),
		AudioSeconds: Number(a.dataset.audioSeconds), FirstText: Number(a.dataset.firstTextMs), FirstAudio: Number(a.dataset.firstAudioMs)}))(`+answer+`)`)
	if err := json.Unmarshal([]byte(raw), &got); err != nil {
		t.Fatal(err)
	}
	t.Logf("answer %q: %s; %d text chunks, %d audio chunks, %.2f s of speech; first text after %v ms, first audio after %v ms",
		got.Text, got.Meta, got.Chunks, got.AudioChunks, got.AudioSeconds, got.FirstText, got.FirstAudio)
	if got.Chunks == 0 || strings.TrimSpace(got.Text) == "" {
		t.Errorf("no text streamed: %+v", got)
	}
	if got.AudioChunks < 1 || got.AudioSeconds <= 0 {
		t.Errorf("no speech scheduled: %+v", got)
	}
	// Each sentence goes to be spoken only after its text went out.
	if got.FirstAudio < got.FirstText {
		t.Errorf("first audio at %v ms before the first text at %v ms", got.FirstAudio, got.FirstText)
	}
	if !strings.Contains(got.Meta, "(this node)") || !strings.Contains(got.Meta, " tokens") || got.PromptTokens <= 0 {
		t.Errorf("meta %q, prompt tokens %d: want served by this node and the token counts", got.Meta, got.PromptTokens)
	}
	var body struct {
		Modalities []string
		Audio      struct{ Model, Voice, Format string }
		Stream     bool
	}
	if err := json.Unmarshal([]byte(lastSent(t, p, "/v1/chat/completions").Body), &body); err != nil {
		t.Fatal(err)
	}
	if strings.Join(body.Modalities, ",") != "text,audio" || body.Audio.Model != "voice" || body.Audio.Format != "wav" || !body.Stream {
		t.Errorf("request %+v: want a streamed audio chat with voice's WAV", body)
	}

	// Stop, while the answer streams and speaks, ends both: the request and the audio. Stop is
	// clicked as the first audio is scheduled (a polled click could come after the stream, which
	// takes well under a second), and the test adds ignore_eos to the request so that the random
	// model writes on.
	p.do("clear, 200 tokens, keep the audio contexts", chromedp.Click(chromedp.ID("chat-clear")),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('chat-max-tokens').value = '200';
		window.contexts = []; window.AudioContext = class extends AudioContext { constructor(...a) { super(...a); window.contexts.push(this) } };
		const f = window.fetch;
		window.fetch = (url, opts = {}) => f(url, String(url).includes('/v1/chat/') ? { ...opts, body: JSON.stringify({ ...JSON.parse(opts.body), ignore_eos: true }) } : opts)`))
	p.do("stop at the first audio", chromedp.Evaluate[chromedp.Void](`window.streaming = null;
		new MutationObserver((_, o) => {
			if (!(document.querySelector('.msg.assistant')?.dataset.audioChunks >= 1)) return;
			o.disconnect();
			window.streaming = document.getElementById('chat-send').disabled;
			document.getElementById('chat-stop').click();
		}).observe(document.getElementById('chat-log'), { subtree: true, attributeFilter: ['data-audio-chunks'] })`))
	p.do("send", chromedp.SendKeys(chromedp.ID("chat-input"), "Go on."), chromedp.Click(chromedp.ID("chat-send")))
	p.waitFor("speech scheduled and stopped", `window.streaming !== null`)
	if !eval[bool](p, `window.streaming`) {
		t.Fatalf("the 200-token answer ended before its first audio was scheduled")
	}
	p.waitFor("stopped", answer+`?.classList.contains('done') && document.getElementById('chat-stop').disabled`)
	if meta := eval[string](p, answer+`.querySelector('.meta').textContent`); !strings.Contains(meta, "stopped") {
		t.Errorf("meta %q after Stop: want stopped", meta)
	}
	if state := eval[string](p, `window.contexts.map(c => c.state).join()`); state != "closed" {
		t.Errorf("audio contexts after Stop: %q, want one closed", state)
	}

	// Off again: a plain text chat.
	p.do("read aloud off, clear, 24 tokens", chromedp.Click(chromedp.ID("chat-aloud")), chromedp.Click(chromedp.ID("chat-clear")),
		chromedp.Evaluate[chromedp.Void](`document.getElementById('chat-max-tokens').value = '24'`))
	p.do("send", chromedp.SendKeys(chromedp.ID("chat-input"), "And another."), chromedp.Click(chromedp.ID("chat-send")))
	p.waitFor("the answer", answer+`?.classList.contains('done')`)
	if b := lastSent(t, p, "/v1/chat/completions").Body; strings.Contains(b, "modalities") || eval[bool](p, `'audioChunks' in `+answer+`.dataset`) {
		t.Errorf("read aloud off, the chat still asked for speech: %s", b)
	}
	p.do("phone width", chromedp.EmulateViewport(390, 844))
	p.waitFor("laid out", `document.documentElement.clientWidth <= 390`)
	if w := eval[float64](p, `document.documentElement.scrollWidth - window.innerWidth`); w > 0 {
		t.Errorf("playground at phone width: %v px wider than the screen", w)
	}
	p.shot("phone")
	p.noErrors()
}

// TestDashboardPlaygroundPinsANode: in a mesh of two that both serve tiny, the Node select
// lists both; pinned to peer b, the answer comes from b (a alone would serve it: its own copy is
// loaded and free); "any" leaves it to the router again. b's speech model, which a lacks, shows
// with the voices b announces, and speaks an answer through a.
func TestDashboardPlaygroundPinsANode(t *testing.T) {
	a, b, _, _ := startMeshPair(t, []config.Model{tinyDecl("tiny")}, tinyDecl("tiny"), ttsDecl("bvoice", "flite", "slt"))
	aID, bID := nodeID(t, a.HTTPAddr()), nodeID(t, b.HTTPAddr())
	p := openDashboard(t, "http://"+a.HTTPAddr())
	p.do("open the Playground", chromedp.Navigate(p.base+"/#/chat"))
	p.waitFor("tiny on a and b in the Node select", `(v => v.includes(`+js(aID)+`) && v.includes(`+js(bID)+`))([...document.querySelectorAll('#chat-node option')].map(o => o.value))`)
	p.do("few tokens", chromedp.Evaluate[chromedp.Void](`document.getElementById('chat-max-tokens').value = '4'`))
	for i, c := range []struct{ node, servedBy string }{{bID, "served by b"}, {"", "(this node)"}} {
		p.do("pin "+c.node, chromedp.Evaluate[chromedp.Void](`(s => { s.value = `+js(c.node)+`; s.dispatchEvent(new Event('change')) })(document.getElementById('chat-node'))`))
		p.do("send", chromedp.SendKeys(chromedp.ID("chat-input"), "Hello"), chromedp.Click(chromedp.ID("chat-send")))
		answer := fmt.Sprintf(`document.querySelectorAll('.msg.assistant')[%d]`, i)
		p.waitFor("the answer", answer+`?.classList.contains('done')`)
		if meta := eval[string](p, answer+`.querySelector('.meta').textContent`); !strings.Contains(meta, c.servedBy) {
			t.Errorf("pinned to %q: %q, want %q", c.node, meta, c.servedBy)
		}
	}
	p.shot("pinned")

	// b's voices, from its announcement; flite speaks the answer on b, asked through a.
	voices := `[...document.querySelectorAll('#chat-voice option')].map(o => o.textContent)`
	p.waitFor("b's flite voices in the voice select", `(v => v.includes('slt — bvoice') && v.includes('kal16 — bvoice') && !v.includes('default — bvoice'))(`+voices+`)`)
	p.do("pick slt", chromedp.Evaluate[chromedp.Void](`(s => { s.value = JSON.stringify(['bvoice', 'slt']); s.dispatchEvent(new Event('change')) })(document.getElementById('chat-voice'))`))
	p.do("speak", chromedp.Click(chromedp.CSS(`.msg.assistant.done button.speak`)))
	p.waitFor("a playable answer", `(a => a && a.readyState >= 1 && a.duration > 0)(document.querySelector('.msg.assistant audio'))`)
	p.shot("spoken-by-b")
	p.noErrors()
}

// renderMarkdown renders markdown with the page's own markdown.js into a box on the page, and
// returns the box's HTML as the browser serialises it (the test reads it; the page never
// writes HTML).
func renderMarkdown(p *page, text string) string {
	p.t.Helper()
	html, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`import('/assets/markdown.js').then(({ markdown }) => {
		const box = document.createElement('div');
		document.body.append(box);
		markdown(box)(`+js(text)+`);
		return box.innerHTML;
	})`, chromedp.EvalAwaitPromise))
	if err != nil {
		p.t.Fatalf("render %q: %v", text, err)
	}
	return html
}

// streamingSample is a piece of a markdown answer, repeated to measure what rendering costs.
const streamingSample = "## Step\nRun **this** with `go test`, then *check*:\n\n- one [link](https://example.com)\n- two\n  - nested\n\n" +
	"```go\nfunc main() {\n\tfmt.Println(\"hi\")\n}\n```\n\nA paragraph of plain words that goes on for a while to fill the answer out.\n\n"

// wideSample is an answer with a code line made LONG.
const wideSample = "## Build it\nRun **this** with `go test`, then *check* [the docs](https://example.com):\n\n1. one\n2. two\n   - nested\n\n```sh\ncurl LONG\n```\nDone."

// TestDashboardPlaygroundMarkdown: answers render as markdown, built as DOM nodes from the text
// and never parsed as HTML: fenced code with its language and a Copy button that fills the
// clipboard, inline code, bold, italic, headings, nested and numbered lists, http(s) links that
// open in a new tab; a javascript: link, a <script> and an <img onerror> stay literal text,
// create no element and run nothing. A real streamed answer renders into its bubble; a code
// block's long line scrolls in its own box at phone width. It logs what rendering a
// 4,000-character answer as it streams costs.
func TestDashboardPlaygroundMarkdown(t *testing.T) {
	n := startNode(t, tinyDecl("tiny"))
	p := openDashboard(t, "http://"+n.HTTPAddr())
	p.do("open the Playground", chromedp.Navigate(p.base+"/#/chat"))
	p.waitFor("tiny in the picker", `document.getElementById('chat-model').value === 'tiny'`)
	p.do("a trap for anything that runs", chromedp.Evaluate[chromedp.Void](`window.pwned = false`))
	scripts := eval[int](p, `document.scripts.length`)

	const link = `target="_blank" rel="noopener noreferrer"`
	const copy = `<button type="button" class="copy">Copy</button>`
	for _, c := range []struct{ name, text, want string }{
		{"code fence", "```go\nfmt.Println(\"<b>hi</b>\")\n\n  x := 1\n```\nafter",
			`<div class="code"><div class="code-bar"><span>go</span>` + copy + `</div><pre><code data-lang="go">fmt.Println("&lt;b&gt;hi&lt;/b&gt;")` + "\n\n  x := 1</code></pre></div><p>after</p>"},
		{"open fence, as it streams", "```\nlet a", `<div class="code"><div class="code-bar"><span></span>` + copy + `</div><pre><code>let a</code></pre></div>`},
		{"inline", "Use `a < b` and **bold**, *italic*, _em_, __strong__ but snake_case_name and 2 * 3 * 4",
			`<p>Use <code>a &lt; b</code> and <strong>bold</strong>, <em>italic</em>, <em>em</em>, <strong>strong</strong> but snake_case_name and 2 * 3 * 4</p>`},
		{"nesting", "**bold `code` *it* end**", `<p><strong>bold <code>code</code> <em>it</em> end</strong></p>`},
		{"headings", "# One\n## Two\n### Three\n#### Four", `<h1>One</h1><h2>Two</h2><h3>Three</h3><p>#### Four</p>`},
		{"lists", "- a\n- b\n  - c\n* d\n\n3. x\n\n4. y\n   ```sh\n   make\n   ```",
			`<ul><li>a</li><li><p>b</p><ul><li>c</li></ul></li><li>d</li></ul><ol start="3"><li>x</li><li><p>y</p><div class="code"><div class="code-bar"><span>sh</span>` + copy +
				`</div><pre><code data-lang="sh">make</code></pre></div></li></ol>`},
		{"paragraphs", "one\ntwo\n\n\nthree", `<p>one<br>two</p><p>three</p>`},
		{"links", "[site](https://example.com/a?b=1) [bad](javascript:alert(1)) see http://127.0.0.1:8080/x. [ftp](ftp://h/f)",
			`<p><a href="https://example.com/a?b=1" ` + link + `>site</a> [bad](javascript:alert(1)) see <a href="http://127.0.0.1:8080/x" ` + link + `>http://127.0.0.1:8080/x</a>. [ftp](ftp://h/f)</p>`},
		{"html", "<script>window.pwned = true</script>\n<img src=x onerror=\"window.pwned = true\"> <a href=\"javascript:1\">x</a>",
			`<p>&lt;script&gt;window.pwned = true&lt;/script&gt;<br>&lt;img src=x onerror="window.pwned = true"&gt; &lt;a href="javascript:1"&gt;x&lt;/a&gt;</p>`},
		{"html in markdown", "**<img src=x onerror=\"window.pwned = true\">** `<script>`\n- <script>window.pwned = true</script>",
			`<p><strong>&lt;img src=x onerror="window.pwned = true"&gt;</strong> <code>&lt;script&gt;</code></p><ul><li>&lt;script&gt;window.pwned = true&lt;/script&gt;</li></ul>`},
	} {
		if got := renderMarkdown(p, c.text); got != c.want {
			t.Errorf("%s: %q renders\n%s\nwant\n%s", c.name, c.text, got, c.want)
		}
	}
	// Nothing the text held became an element, and nothing ran.
	if got := eval[string](p, `JSON.stringify([document.scripts.length, document.querySelectorAll('img, [onerror], a[href^="javascript"]').length, window.pwned])`); got != fmt.Sprintf("[%d,0,false]", scripts) {
		t.Errorf("[scripts, img/onerror/javascript: elements, ran] = %s, want [%d,0,false]", got, scripts)
	}

	// The Copy button writes the code to the clipboard.
	for _, name := range []string{"clipboard-read", "clipboard-write"} {
		if _, err := chromedp.CallBrowser(p.ctx, browser.SetPermission, browser.SetPermissionParams{
			Permission: &browser.PermissionDescriptor{Name: name}, Setting: browser.PermissionSettingGranted, Origin: p.base}); err != nil {
			t.Fatalf("grant %s: %v", name, err)
		}
	}
	p.do("only one code block in the page", chromedp.Evaluate[chromedp.Void](`document.querySelectorAll('body > div').forEach(d => d.remove())`))
	renderMarkdown(p, "```sh\ncurl http://127.0.0.1/v1/models\n```")
	p.do("copy", chromedp.Click(chromedp.CSS(`body > div .code button.copy`)))
	p.waitFor("Copied", `document.querySelector('body > div .code button.copy').textContent === 'Copied'`)
	clip, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`navigator.clipboard.readText()`, chromedp.EvalAwaitPromise))
	if err != nil || clip != "curl http://127.0.0.1/v1/models" {
		t.Errorf("clipboard %q (%v), want the code", clip, err)
	}
	p.do("remove the test's boxes", chromedp.Evaluate[chromedp.Void](`document.querySelectorAll('body > div').forEach(d => d.remove())`))

	// What rendering costs as a 4,000-character answer streams in 4-character pieces: this
	// renderer (which rebuilds the blocks that changed) against rebuilding all, in a bubble.
	cost, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`import('/assets/markdown.js').then(({ markdown }) => {
		const part = `+js(streamingSample)+`;
		const text = part.repeat(Math.ceil(4000 / part.length)).slice(0, 4000);
		const bubble = () => { const b = document.createElement('div'); b.className = 'text'; const m = document.createElement('div'); m.className = 'msg assistant'; m.append(b); document.getElementById('chat-log').append(m); return b; };
		const time = (step) => { const t0 = performance.now(); for (let i = 4; i <= text.length; i += 4) { step(text.slice(0, i)); document.body.offsetHeight; } return performance.now() - t0; };
		const box = bubble(); const draw = markdown(box);
		const incremental = time(draw);
		const again = bubble();
		const full = time((s) => { again.replaceChildren(); markdown(again)(s); });
		const bare = bubble(); const drawBare = markdown(bare);
		const t1 = performance.now(); for (let i = 4; i <= text.length; i += 4) drawBare(text.slice(0, i)); const noLayout = performance.now() - t1;
		const whole = bubble();
		const t0 = performance.now(); markdown(whole)(text); const once = performance.now() - t0;
		const same = box.innerHTML === whole.innerHTML && again.innerHTML === whole.innerHTML && bare.innerHTML === whole.innerHTML;
		document.querySelectorAll('#chat-log .msg').forEach((m) => m.remove());
		return JSON.stringify({ same, chars: text.length, deltas: text.length / 4, blocks: box.children.length, incremental_ms: +incremental.toFixed(1), per_delta_ms: +(incremental / (text.length / 4)).toFixed(3), rebuild_all_ms: +full.toFixed(1), incremental_without_layout_ms: +noLayout.toFixed(1), once_ms: +once.toFixed(2) });
	})`, chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatalf("measure the render cost: %v", err)
	}
	t.Logf("markdown render cost (with layout after each delta): %s", cost)
	// Rebuilding only the changed blocks, piece by piece, ends as rendering the whole at once.
	if !strings.HasPrefix(cost, `{"same":true,`) {
		t.Errorf("rendered as it streamed, the answer differs from the answer rendered whole: %s", cost)
	}

	// A real answer streams into its bubble as markdown.
	p.do("few tokens", chromedp.Evaluate[chromedp.Void](`document.getElementById('chat-max-tokens').value = '16'`))
	p.do("send", chromedp.SendKeys(chromedp.ID("chat-input"), "Hello"), chromedp.Click(chromedp.ID("chat-send")))
	p.waitFor("the answer", `document.querySelector('.msg.assistant')?.classList.contains('done')`)
	// Its bubble, rendered delta by delta, is the markdown of the whole answer (as saved).
	answer, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`import('/assets/markdown.js').then(({ markdown }) => {
		const shown = document.querySelector('.msg.assistant .text');
		const text = JSON.parse(localStorage.getItem('syn4pse.playground.conversation')).at(-1).content;
		const whole = document.createElement('div');
		markdown(whole)(text);
		return JSON.stringify([shown.classList.contains('md'), shown.innerHTML === whole.innerHTML, text]);
	})`, chromedp.EvalAwaitPromise))
	t.Logf("streamed answer [markdown, as rendered whole, text]: %s, %s chunks", answer, eval[string](p, `document.querySelector('.msg.assistant').dataset.chunks`))
	if err != nil || !strings.HasPrefix(answer, "[true,true,") {
		t.Errorf("streamed answer %s (%v): want a markdown box, as the whole answer renders", answer, err)
	}
	if eval[string](p, `document.querySelector('.msg.user .text').className`) != "text" {
		t.Errorf("the user's message is not plain text")
	}
	p.shot("streamed")

	// How an answer looks; a long line of code scrolls in its block at phone width, not the page.
	p.do("a markdown answer with a long code line", chromedp.Evaluate[chromedp.Void](`import('/assets/markdown.js').then(({ markdown }) => {
		const b = document.querySelector('.msg.assistant .text');
		b.replaceChildren();
		markdown(b)(`+js(wideSample)+`.replace('LONG', 'x'.repeat(300)));
	})`, chromedp.EvalAwaitPromise))
	p.shot("rendered")
	p.do("phone width", chromedp.EmulateViewport(390, 844))
	p.waitFor("laid out", `document.documentElement.clientWidth <= 390 && document.querySelector('.msg.assistant pre') !== null`)
	if w := eval[float64](p, `document.documentElement.scrollWidth - window.innerWidth`); w > 0 {
		t.Errorf("a long code line at phone width: the page is %v px wider than the screen", w)
	}
	if !eval[bool](p, `(pre => pre.scrollWidth > pre.clientWidth)(document.querySelector('.msg.assistant pre'))`) {
		t.Errorf("the long code line does not scroll in its block")
	}
	p.do("scroll to it", chromedp.Evaluate[chromedp.Void](`document.querySelector('.msg.assistant').scrollIntoView()`))
	p.shot("phone-code")
	// Speak reads the words, not the marks: no code blocks, a link says its label.
	said, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`import('/assets/markdown.js').then(({ spoken }) => spoken(`+
		js("# Title\nSome **bold** and *it* with `x`.\n\n```sh\nrm -rf /\n```\n- [docs](https://example.com) item\n- 2 * 3")+`))`,
		chromedp.EvalAwaitPromise))
	if err != nil {
		t.Fatal(err)
	}
	if want := "Title\nSome bold and it with x.\ndocs item\n2 * 3"; said != want {
		t.Errorf("spoken: %q, want %q", said, want)
	}
	p.noErrors()
}

// noisePNG writes a w×h PNG of random pixels (which PNG cannot compress) and returns its path.
func noisePNG(t *testing.T, w, h int) string {
	t.Helper()
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range img.Pix {
		img.Pix[i] = uint8(rng.Uint32())
	}
	var b bytes.Buffer
	if err := png.Encode(&b, img); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "noise.png")
	if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestDashboardPlaygroundKeeps: the conversation (its image too, while small) and the settings
// (model, pinned node, system prompt, temperature, max tokens, sampling, voice, read aloud)
// survive a reload; an image that would take the saved copy past 2 MB is left out of it for
// "[image]"; Clear empties it for good; a corrupt or foreign value in storage is ignored, and the
// page works on with no console error.
func TestDashboardPlaygroundKeeps(t *testing.T) {
	projector := filepath.Join(t.TempDir(), "mmproj.gguf")
	if err := tinygguf.WriteVisionProjector(projector, 4); err != nil {
		t.Fatal(err)
	}
	viewer := tinyDecl("viewer")
	viewer.Projector = projector
	n := startNode(t, viewer, tinyDecl("tiny"), ttsDecl("voice", "flite", "kal16"))
	self := nodeID(t, n.HTTPAddr())
	small := filepath.Join(t.TempDir(), "small.png")
	png, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(pngDataURL(t, 24, 16), "data:image/png;base64,"))
	if err := os.WriteFile(small, png, 0o644); err != nil {
		t.Fatal(err)
	}
	big := noisePNG(t, 900, 600) // 2.1 MB, 2.9 MB as a data URL

	p := openDashboard(t, "http://"+n.HTTPAddr())
	p.do("open the Playground", chromedp.Navigate(p.base+"/#/chat"))
	ready := `[...document.querySelectorAll('#chat-model option')].map(o => o.value).sort().join() === 'tiny,viewer' && !document.getElementById('chat-voice').closest('label').hidden`
	p.waitFor("the models and the voices", ready)
	// set changes a field as the user does, with its input and change events.
	set := func(id, value string) {
		p.do("set "+id, chromedp.Evaluate[chromedp.Void](`(e => { e.value = `+js(value)+`; e.dispatchEvent(new Event('input', { bubbles: true })); e.dispatchEvent(new Event('change', { bubbles: true }));
			if (e.value !== `+js(value)+`) throw new Error('no value ' + `+js(value)+` + ' for ' + e.id) })(document.getElementById(`+js(id)+`))`))
	}
	ask := func(text, file string) {
		if file != "" {
			p.do("attach", chromedp.SetUploadFiles(chromedp.ID("chat-image"), []string{file}))
			p.waitFor("the thumbnail", `document.querySelector('#chat-attachments img.thumb') !== null`)
		}
		done := eval[int](p, `document.querySelectorAll('.msg.assistant.done').length`)
		p.do("send", chromedp.SendKeys(chromedp.ID("chat-input"), text), chromedp.Click(chromedp.ID("chat-send")))
		p.waitFor("the answer", fmt.Sprintf(`document.querySelectorAll('.msg.assistant.done').length === %d`, done+1))
	}
	// log is the conversation as the page shows it: each bubble's role, text, images and meta.
	const log = `JSON.stringify([...document.querySelectorAll('#chat-log .msg')].map(m => [m.dataset.role, m.querySelector('.text').textContent,
		[...m.querySelectorAll('img.thumb')].map(i => i.src.slice(0, 22)).join(), m.querySelector('.meta').textContent]))`
	const settings = `JSON.stringify(['chat-model', 'chat-node', 'chat-system', 'chat-temperature', 'chat-max-tokens', 'chat-top-k', 'chat-seed', 'chat-stop-seq', 'chat-voice']
		.map(id => document.getElementById(id).value).concat(document.getElementById('chat-aloud').checked))`
	reload := func(what string) {
		p.do("reload: "+what, chromedp.Reload())
		p.waitFor("the page again", ready)
	}

	set("chat-model", "viewer")
	set("chat-max-tokens", "4")
	ask("Describe", small)
	ask("Hello", "")
	// The other settings, picked where a default would differ.
	other := "tiny"
	if eval[string](p, `document.querySelector('#chat-model option').value`) == "tiny" {
		other = "viewer"
	}
	set("chat-model", other)
	set("chat-node", self)
	set("chat-system", "Be brief.")
	set("chat-temperature", "0.3")
	set("chat-top-k", "20")
	set("chat-seed", "7")
	set("chat-stop-seq", "###\nEND")
	set("chat-voice", eval[string](p, `document.querySelector('#chat-voice option:last-child').value`))
	p.do("read aloud", chromedp.Click(chromedp.ID("chat-aloud")))
	before, kept := eval[string](p, log), eval[string](p, settings)
	t.Logf("before the reload: %s, settings %s", before, kept)
	p.shot("before")
	reload("the conversation and the settings")
	p.waitFor("the conversation back", log+` === `+js(before))
	p.waitFor("the settings back", settings+` === `+js(kept))
	if !strings.Contains(before, `"data:image/png;base64,"`) || strings.Count(before, `"assistant"`) != 2 || !strings.Contains(before, "(this node)") {
		t.Errorf("conversation %s: want the image, two answers and who served them", before)
	}
	if !eval[bool](p, `document.querySelector('.msg.assistant .text').classList.contains('md') && document.querySelector('.msg.user .text').className === 'text'`) {
		t.Errorf("restored answers are not markdown, or questions not plain text")
	}
	p.shot("restored")

	// An image that would take the saved copy past 2 MB: left out of it, oldest first.
	set("chat-model", "viewer")
	p.do("read aloud off", chromedp.Evaluate[chromedp.Void](`(a => { if (a.checked) a.click() })(document.getElementById('chat-aloud'))`))
	ask("And this?", big)
	if n := eval[int](p, `document.querySelectorAll('.msg.user img.thumb').length`); n != 2 {
		t.Errorf("%d images shown before the reload, want both", n)
	}
	stored := eval[string](p, `JSON.stringify([localStorage.getItem('syn4pse.playground.conversation').length, (localStorage.getItem('syn4pse.playground.conversation').match(/\[image\]/g) || []).length])`)
	t.Logf("saved copy with the big image [characters, placeholders]: %s", stored)
	reload("the big image")
	shown := eval[string](p, log)
	if strings.Count(shown, `"user"`) != 3 || strings.Contains(shown, "data:image") || strings.Count(shown, `[image]`) != 2 || !strings.Contains(shown, "And this?") {
		t.Errorf("after the reload: %s; want three questions, the images as [image] placeholders, the text kept", shown)
	}
	p.shot("placeholders")

	p.do("clear", chromedp.Click(chromedp.ID("chat-clear")))
	reload("cleared")
	if got := eval[string](p, `JSON.stringify([document.querySelectorAll('#chat-log .msg').length, localStorage.getItem('syn4pse.playground.conversation')])`); got != "[0,null]" {
		t.Errorf("after Clear and a reload: [bubbles, saved] = %s, want [0,null]", got)
	}

	// Corrupt and foreign values are ignored: the defaults show and a chat works.
	for _, bad := range [][2]string{
		{`{"role": "user", "content": `, `[1, 2`},
		{`[{"role": "system", "content": "x"}]`, `"a string"`},
		{`[{"role": "assistant", "content": [{"type": "text", "text": "x"}]}]`, `null`},
		{`[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "javascript:alert(1)"}}]}]`, `{"model": 5, "temperature": {"x": 1}, "aloud": "yes"}`},
	} {
		p.do("corrupt storage", chromedp.Evaluate[chromedp.Void](`localStorage.setItem('syn4pse.playground.conversation', `+js(bad[0])+`);
			localStorage.setItem('syn4pse.playground.settings', `+js(bad[1])+`)`))
		reload("corrupt " + bad[0])
		if got := eval[string](p, `JSON.stringify([document.querySelectorAll('#chat-log .msg').length, document.getElementById('chat-temperature').value, document.getElementById('chat-aloud').checked])`); got != `[0,"0.8",false]` {
			t.Errorf("storage %q / %q: [bubbles, temperature, read aloud] = %s, want the defaults [0,\"0.8\",false]", bad[0], bad[1], got)
		}
	}
	set("chat-max-tokens", "4")
	ask("Hello", "")
	reload("after the corrupt values")
	p.waitFor("the new conversation kept", `document.querySelectorAll('#chat-log .msg').length === 2`)
	p.shot("after-corrupt")
	p.noErrors()
}
