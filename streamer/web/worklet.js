// AudioWorklet: copies the microphone's samples (mono, the context's rate) and posts them to the
// page in 100 ms frames, with the frame's RMS level. No conversion here: the server resamples.
class Capture extends AudioWorkletProcessor {
  constructor() {
    super();
    this.frameLength = Math.round(sampleRate / 10);
    this.frame = new Float32Array(this.frameLength);
    this.filled = 0;
  }
  process(inputs) {
    const input = inputs[0];
    if (!input || input.length === 0) return true;
    const channels = input.length, n = input[0].length;
    for (let i = 0; i < n; i++) {
      let v = 0;
      for (let c = 0; c < channels; c++) v += input[c][i];
      this.frame[this.filled++] = v / channels;
      if (this.filled === this.frameLength) {
        let sum = 0;
        for (const s of this.frame) sum += s * s;
        const out = this.frame;
        this.port.postMessage({ samples: out, rms: Math.sqrt(sum / out.length) }, [out.buffer]);
        this.frame = new Float32Array(this.frameLength);  // out's buffer now belongs to the page
        this.filled = 0;
      }
    }
    return true;
  }
}
registerProcessor("ser-capture", Capture);
