// Drives the real tus-js-client (Node) against the service, for tests/tus.rs.
//
//   node tus-client.mjs --endpoint URL --file PATH --key KEY [--chunk BYTES]
//                       [--stop-after BYTES] [--resume UPLOAD_URL]
//
// Prints one JSON line per event on stdout:
//   {"event":"created","url":…}          the upload's address
//   {"event":"resumed","offset":N}       the offset HEAD answered on resume
//   {"event":"stopped","url":…,"bytes":N} --stop-after reached, upload aborted
//   {"event":"success","url":…,"link":…,"result":{…}}
//   {"event":"error","message":…}        then exits 1
import { readFileSync } from "node:fs";
import { Upload } from "tus-js-client";

const args = {};
for (let i = 2; i < process.argv.length; i += 2) {
  args[process.argv[i].replace(/^--/, "")] = process.argv[i + 1];
}
const say = (event) => process.stdout.write(JSON.stringify(event) + "\n");

const data = readFileSync(args.file);
const stopAfter = args["stop-after"] ? Number(args["stop-after"]) : null;
let link = null;
let result = null;
let stopped = false;

const upload = new Upload(data, {
  endpoint: args.endpoint,
  uploadUrl: args.resume || null,
  chunkSize: args.chunk ? Number(args.chunk) : Infinity,
  retryDelays: [0, 250, 500, 1000, 2000, 3000, 5000],
  headers: { "X-Security-Key": args.key },
  metadata: { filename: "large.jpg", filetype: "image/jpeg" },
  storeFingerprintForResuming: false,
  onAfterResponse(req, res) {
    if (req.getMethod() === "HEAD" && args.resume) {
      say({ event: "resumed", offset: Number(res.getHeader("Upload-Offset")) });
    }
    const headerLink = res.getHeader("X-Upload-Link");
    if (headerLink) {
      link = headerLink;
      result = JSON.parse(res.getHeader("X-Upload-Result"));
    }
  },
  onUploadUrlAvailable() {
    if (!args.resume) say({ event: "created", url: upload.url });
  },
  onChunkComplete(_chunk, accepted) {
    if (stopAfter !== null && accepted >= stopAfter && !stopped) {
      stopped = true;
      upload.abort().then(() => {
        say({ event: "stopped", url: upload.url, bytes: accepted });
        process.exit(0);
      });
    }
  },
  onSuccess() {
    say({ event: "success", url: upload.url, link, result });
    process.exit(0);
  },
  onError(error) {
    say({ event: "error", message: String(error) });
    process.exit(1);
  },
});
upload.start();
