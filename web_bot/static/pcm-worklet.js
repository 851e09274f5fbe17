// AudioWorklet for hands-free mode: downsamples the microphone to 16-bit PCM at the target rate (16 kHz) and
// posts it to the page in 20 ms chunks. Runs on the audio thread, so it allocates nothing per sample.
"use strict";

class PcmDownsampler extends AudioWorkletProcessor {
  constructor(options) {
    super();
    const opts = (options && options.processorOptions) || {};
    const target = opts.targetRate || 16000;
    // `sampleRate` is the AudioContext's rate, a global of the worklet scope.
    this.step = sampleRate / target;
    this.chunk = new Int16Array(Math.round((target * (opts.chunkMs || 20)) / 1000));
    this.filled = 0;
    // A box filter over each output sample's span of input: enough anti-aliasing for speech and the VAD.
    this.sum = 0;
    this.count = 0;
    this.phase = 0;
    this.running = true;
    this.port.onmessage = (event) => {
      if (event.data === "stop") this.running = false;
    };
  }

  process(inputs) {
    const input = inputs[0];
    if (!this.running) return false;
    if (!input || input.length === 0) return true;
    const channels = input.length;
    const frames = input[0].length;
    for (let i = 0; i < frames; i++) {
      let x = input[0][i];
      if (channels > 1) {
        for (let c = 1; c < channels; c++) x += input[c][i];
        x /= channels;
      }
      this.sum += x;
      this.count += 1;
      this.phase += 1;
      if (this.phase >= this.step) {
        this.phase -= this.step;
        this.emit(this.sum / this.count);
        this.sum = 0;
        this.count = 0;
      }
    }
    return true;
  }

  emit(value) {
    const clamped = value > 1 ? 1 : value < -1 ? -1 : value;
    this.chunk[this.filled++] = clamped < 0 ? clamped * 0x8000 : clamped * 0x7fff;
    if (this.filled === this.chunk.length) {
      const out = this.chunk.slice();
      this.port.postMessage(out.buffer, [out.buffer]);
      this.filled = 0;
    }
  }
}

registerProcessor("pcm-downsampler", PcmDownsampler);
