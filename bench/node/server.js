// Reference server of the benchmark: Express + multer with disk storage, the
// way a Node.js upload endpoint is usually written. Every file part is
// streamed by multer to UPLOAD_DIR under a random name; the answer carries
// the link of the first file, as the Rust service's does.
//
//   PORT=8090 UPLOAD_DIR=uploads node server.js
'use strict';

const crypto = require('node:crypto');
const path = require('node:path');
const express = require('express');
const multer = require('multer');

const port = Number(process.env.PORT || 8090);
const dir = process.env.UPLOAD_DIR;
if (!dir) {
  console.error('UPLOAD_DIR is required');
  process.exit(2);
}

const storage = multer.diskStorage({
  destination: dir,
  filename: (_req, file, cb) =>
    cb(null, crypto.randomUUID() + (path.extname(file.originalname) || '.jpg')),
});
const upload = multer({ storage });

const app = express();
app.post('/do.ashx', upload.any(), (req, res) => {
  const files = req.files || [];
  if (files.length === 0) {
    res.status(400).type('text/xml').send('<resp><success>0</success></resp>');
    return;
  }
  res
    .type('text/xml')
    .send(`<resp><success>1</success><link>http://127.0.0.1:${port}/${files[0].filename}</link></resp>`);
});

app.listen(port, '127.0.0.1', () => console.log(`listening on 127.0.0.1:${port}`));
