// An AudioWorklet that hands each block of the microphone's first channel to the page
// (audio.js records it), as MediaRecorder's webm/opus is not a format the node decodes.
registerProcessor('pcm-tap', class extends AudioWorkletProcessor {
  process(inputs) {
    const channel = inputs[0]?.[0];
    if (channel) this.port.postMessage(channel.slice());
    return true;
  }
});
