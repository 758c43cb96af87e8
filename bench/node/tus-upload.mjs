// One resumable upload with tus-js-client, for bench/tus.sh:
//   node tus-upload.mjs ENDPOINT KEY FILE CHUNK_BYTES
// Prints "seconds bytes link" once the last PATCH is answered (the file is
// then stored, replicated and indexed, as after a multipart upload's answer).
import fs from "node:fs";
import * as tus from "tus-js-client";

const [endpoint, key, file, chunk] = process.argv.slice(2);
const size = fs.statSync(file).size;
const started = process.hrtime.bigint();
const upload = new tus.Upload(fs.createReadStream(file), {
  endpoint,
  chunkSize: Number(chunk),
  headers: { "X-Security-Key": key },
  metadata: { filename: "big.jpg" },
  // A failure must show in the figures, not be retried away.
  retryDelays: null,
  storeFingerprintForResuming: false,
  onSuccess({ lastResponse }) {
    const secs = Number(process.hrtime.bigint() - started) / 1e9;
    console.log(`${secs.toFixed(3)} ${size} ${lastResponse.getHeader("X-Upload-Link") || ""}`);
  },
  onError(err) {
    console.error(`tus upload failed: ${err.message}`);
    process.exit(1);
  },
});
upload.start();
