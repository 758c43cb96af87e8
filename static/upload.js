/* Upload page of multiserver-upload.
 *
 * Plain browser JavaScript, no build step. Every file is sent in its own
 * request (POST /do.ashx?action=upload&format=json), at most MAX_PARALLEL at
 * a time, so each one has its own progress bar and cancel button.
 *
 * The credential comes from the address (?SecurityKey=… for a key,
 * #token=… for an upload token) or, when there is none, from a field the
 * page shows. A key goes in the X-Security-Key header, a token in
 * Authorization: Bearer; neither ever goes into a URL.
 *
 * Files larger than the server's threshold (the page's
 * data-tus-threshold, from `[resumable] page_threshold_bytes`) go through
 * tus instead (tus-js-client, /.m/tus.min.js): in chunks that the server
 * keeps as they arrive, so a dropped connection resumes by itself where it
 * stopped, and a page reloaded mid-upload resumes when the same file is
 * chosen again.
 */
(function () {
  "use strict";

  var MAX_PARALLEL = 3;
  var UPLOAD_URL = "/do.ashx?action=upload&format=json";
  var ALLOWED = "JPG, PNG, GIF, WebP, BMP";
  var ALLOWED_ZH = "JPG、PNG、GIF、WebP、BMP";

  var TUS_ENDPOINT = "/files/";
  /* A dropped connection costs at most the chunk in flight: 4 MiB is half a
     minute on a slow phone link, and few enough requests (each one fsync'd
     by the server) on a fast one. */
  var TUS_CHUNK_BYTES = 4 * 1024 * 1024;
  /* Retries after a network error or a busy server: quick at first, then
     every minute for a while, so a tunnel or a change of network needs no
     click. Progress made resets the count. */
  var TUS_RETRY_DELAYS = [0, 1000, 3000, 5000, 10000, 20000, 30000, 60000, 60000, 60000, 60000, 60000];
  var TUS_DEFAULT_THRESHOLD = 8 * 1024 * 1024;

  /* All visible text, in one place. {name} is replaced by a value. */
  var STRINGS = {
    en: {
      pageTitle: "Upload images",
      title: "Upload images",
      subtitle: "Each image is stored on this server and copied to every peer server.",
      credentialLabel: "Security key or upload token",
      credentialHint: "This page needs a security key or an upload token. Ask the site administrator for one.",
      credentialUse: "Use",
      credentialRefused: "The server refused this key or token. Enter another one.",
      tokenInfo: "Uploading with an upload token, valid until {time}.",
      tokenInfoFiles: "Uploading with an upload token for up to {n} files, valid until {time}.",
      tokenExpired: "This upload token has expired ({time}). Ask for a new one.",
      dropMain: "Drop images here, or choose files",
      dropHint: "JPG, PNG, GIF, WebP or BMP. Many files at once are fine; you can also paste an image.",
      dropLabel: "Choose images to upload. Press Enter or Space to open the file picker.",
      copyAll: "Copy all links",
      clearFinished: "Clear finished",
      summary: "{done} of {total} stored",
      summaryActive: "{done} of {total} stored, {active} uploading, {queued} waiting",
      summaryFailed: ", {failed} failed",
      summaryCancelled: ", {cancelled} cancelled",
      queued: "Waiting…",
      uploading: "Uploading…",
      processing: "Sent, the server is storing and copying it to the peers…",
      done: "Stored",
      cancelled: "Cancelled",
      failed: "Not stored",
      cancel: "Cancel",
      copy: "Copy link",
      copyThumb: "Copy thumbnail link",
      copied: "Copied!",
      copyFailed: "Copy failed: select the link and copy it by hand",
      retry: "Retry",
      remove: "Remove",
      noPreview: "no preview",
      replicaOk: "{peer}: copied",
      replicaQueued: "{peer}: queued for retry",
      replicaFailed: "{peer}: copy failed",
      replicasNone: "No peer servers configured: stored on this server only.",
      replicaTitleOk: "The copy on this peer server is stored.",
      replicaTitleQueued: "This peer could not be reached now. The copy was written to the retry journal and will be made later; nothing is lost.",
      replicaTitleFailed: "The copy to this peer failed. The file is stored on this server.",
      replicaNote: "↻ = that server will get its copy automatically later. The file is already stored and the link works.",
      serverSaid: "Server said: {error}",
      err0: "Network error: the server could not be reached, or the connection was cut.",
      err400: "The server could not read this upload (bad request or empty file).",
      err403: "The server refused the key or upload token (HTTP 403).",
      err408: "The upload was too slow and the server stopped waiting. Check the connection and try again.",
      err413: "The file is too large for this server.",
      err415: "Not an allowed image type. Only " + ALLOWED + " images are accepted (HTTP 415).",
      err500: "The server had an internal error. Try again later.",
      err507: "The server's disk is full. Please tell the site administrator.",
      errOther: "The upload failed (HTTP {status}).",
      errBadAnswer: "The server sent an answer this page cannot read (HTTP {status}).",
      errNotImage: "This is not an image file ({type}). Only " + ALLOWED + " images are accepted.",
      errEmpty: "This file is empty.",
      leaveWarning: "Uploads are still running. Leave the page anyway?",
      resuming: "Resuming where it stopped…",
      resumeIntro: "Interrupted uploads can go on where they stopped. Choose the same files again to resume them:",
      resumeForget: "Forget them",
      err404: "The server no longer has this partial upload (it expired). Retry sends the file again.",
      clusterServer: "Server {name}",
      clusterOwed: "{n} copies owed",
      peerInSync: "{name}: in sync",
      peerBehind: "{name}: repairing ({fetched} fetched in the last pass)",
      peerUnreachable: "{name}: unreachable, copies journaled",
      peerUnknown: "{name}: not compared yet",
      peerError: "{name}: could not be compared (down?)",
      clusterChecked: "checked {time}"
    },
    zh: {
      pageTitle: "上传图片",
      title: "上传图片",
      subtitle: "每张图片都会保存在本服务器上，并复制到所有其他服务器。",
      credentialLabel: "安全密钥或上传令牌",
      credentialHint: "本页面需要安全密钥或上传令牌，请向网站管理员索取。",
      credentialUse: "使用",
      credentialRefused: "服务器拒绝了此密钥或令牌，请输入其他的。",
      tokenInfo: "正在使用上传令牌，有效期至 {time}。",
      tokenInfoFiles: "正在使用上传令牌，最多 {n} 个文件，有效期至 {time}。",
      tokenExpired: "此上传令牌已于 {time} 过期，请重新索取。",
      dropMain: "把图片拖到这里，或点击选择文件",
      dropHint: "支持 JPG、PNG、GIF、WebP、BMP。可一次选择多张，也可以直接粘贴图片。",
      dropLabel: "选择要上传的图片。按回车键或空格键打开文件选择框。",
      copyAll: "复制全部链接",
      clearFinished: "清除已完成",
      summary: "已保存 {done} / {total}",
      summaryActive: "已保存 {done} / {total}，上传中 {active}，等待中 {queued}",
      summaryFailed: "，失败 {failed}",
      summaryCancelled: "，已取消 {cancelled}",
      queued: "等待上传…",
      uploading: "上传中…",
      processing: "已发送，服务器正在保存并复制到其他服务器…",
      done: "已保存",
      cancelled: "已取消",
      failed: "未保存",
      cancel: "取消",
      copy: "复制链接",
      copyThumb: "复制缩略图链接",
      copied: "已复制！",
      copyFailed: "复制失败：请选中链接手动复制",
      retry: "重试",
      remove: "移除",
      noPreview: "无预览",
      replicaOk: "{peer}：已复制",
      replicaQueued: "{peer}：已加入重试队列",
      replicaFailed: "{peer}：复制失败",
      replicasNone: "未配置其他服务器：仅保存在本服务器上。",
      replicaTitleOk: "此服务器上的副本已保存。",
      replicaTitleQueued: "暂时无法连接此服务器。副本已写入重试日志，稍后会自动补传，文件不会丢失。",
      replicaTitleFailed: "复制到此服务器失败。文件已保存在本服务器上。",
      replicaNote: "↻ 表示该服务器稍后会自动收到副本。文件已经保存，链接可以正常使用。",
      serverSaid: "服务器返回：{error}",
      err0: "网络错误：无法连接服务器，或连接已中断。",
      err400: "服务器无法读取此次上传（请求有误或文件为空）。",
      err403: "服务器拒绝了密钥或上传令牌（HTTP 403）。",
      err408: "上传太慢，服务器已停止等待。请检查网络后重试。",
      err413: "文件太大，超出了服务器的限制。",
      err415: "不是允许的图片类型，仅接受 " + ALLOWED_ZH + " 图片（HTTP 415）。",
      err500: "服务器内部错误，请稍后重试。",
      err507: "服务器磁盘已满，请联系网站管理员。",
      errOther: "上传失败（HTTP {status}）。",
      errBadAnswer: "服务器的应答无法识别（HTTP {status}）。",
      errNotImage: "这不是图片文件（{type}）。仅接受 " + ALLOWED_ZH + " 图片。",
      errEmpty: "这是一个空文件。",
      leaveWarning: "还有文件正在上传，确定要离开本页面吗？",
      resuming: "从中断处继续上传…",
      resumeIntro: "以下上传曾被中断，可以从中断处继续。重新选择相同的文件即可继续：",
      resumeForget: "忽略这些",
      err404: "服务器上已没有这次未完成的上传（已过期）。点击重试将重新发送文件。",
      clusterServer: "服务器 {name}",
      clusterOwed: "待复制 {n} 份",
      peerInSync: "{name}：已同步",
      peerBehind: "{name}：修复中（上次取回 {fetched} 个文件）",
      peerUnreachable: "{name}：无法连接，副本已记入日志",
      peerUnknown: "{name}：尚未比较",
      peerError: "{name}：无法比较（是否已停机？）",
      clusterChecked: "检查于 {time}"
    }
  };

  var lang = /^zh/i.test(navigator.language || "") ? "zh" : "en";
  var T = STRINGS[lang];

  function t(name, values) {
    var s = T[name] !== undefined ? T[name] : STRINGS.en[name];
    if (values) {
      s = s.replace(/\{(\w+)\}/g, function (all, k) {
        return values[k] !== undefined ? String(values[k]) : all;
      });
    }
    return s;
  }

  /* The key: query parameter name is case-insensitive (SecurityKey, securitykey, ...).
     Once read, it is taken out of the address bar, so it does not stay on
     screen, in screenshots or in a link copied from there; the page keeps it
     in memory only (a reload asks for it again). */
  function readKey() {
    var params = new URLSearchParams(location.search);
    var found = "";
    var rest = new URLSearchParams();
    params.forEach(function (value, name) {
      if (name.toLowerCase() === "securitykey") {
        if (!found) found = value;
      } else {
        rest.append(name, value);
      }
    });
    if (found && window.history && history.replaceState) {
      var query = rest.toString();
      history.replaceState(null, "", location.pathname + (query ? "?" + query : "") + location.hash);
    }
    return found;
  }

  /* An upload token from the fragment (#token=…): a browser never sends the
     fragment to a server, so it stays out of logs and Referer headers. It
     is taken out of the address bar at once, so that it is not kept in the
     history either. */
  function readToken() {
    var hash = location.hash.replace(/^#/, "");
    if (!hash) return "";
    var params = new URLSearchParams(hash);
    var found = params.get("token") || "";
    if (found && window.history && history.replaceState) {
      params.delete("token");
      var rest = params.toString();
      history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
    }
    return found;
  }

  /* A token is base64url(claims) "." base64url(signature); its claims are
     readable (not secret, only signed), so the page can show its limits. */
  function tokenClaims(text) {
    var m = /^([A-Za-z0-9_-]+)\.([A-Za-z0-9_-]+)$/.exec(text);
    if (!m) return null;
    try {
      var b64 = m[1].replace(/-/g, "+").replace(/_/g, "/");
      var claims = JSON.parse(atob(b64 + "===".slice((b64.length + 3) % 4)));
      return claims && typeof claims === "object" && typeof claims.exp === "number" ? claims : null;
    } catch (e) {
      return null;
    }
  }

  /* What the user typed: a token if it reads as one, else a key. */
  function credentialOf(text) {
    text = text.trim();
    if (!text) return null;
    return tokenClaims(text) ? { token: text } : { key: text };
  }

  function formatSize(n) {
    if (typeof n !== "number" || !isFinite(n)) return "";
    if (n < 1024) return n + " B";
    var units = ["KB", "MB", "GB", "TB"];
    var v = n / 1024;
    var i = 0;
    while (v >= 1024 && i < units.length - 1) {
      v /= 1024;
      i++;
    }
    return (v >= 100 ? v.toFixed(0) : v.toFixed(1)) + " " + units[i];
  }

  var credential = (function () {
    var key = readKey();
    var token = readToken();
    if (token) return { token: token };
    if (key) return { key: key };
    return null;
  })();
  var els = {};
  var tasks = [];      // every row, in display order
  var waiting = [];    // tasks queued for upload, FIFO
  var active = 0;      // uploads in flight
  var nextId = 1;

  /* ---------- rows ---------- */

  function setState(task, state) {
    task.state = state;
    task.row.setAttribute("data-state", state);
    var busy = state === "queued" || state === "uploading";
    task.row.setAttribute("aria-busy", busy ? "true" : "false");
    task.ui.cancel.hidden = !busy;
    task.ui.copy.hidden = state !== "done";
    task.ui.copyThumb.hidden = state !== "done";
    task.ui.retry.hidden = !((state === "error" && task.retryable) || state === "cancelled");
    task.ui.remove.hidden = busy;
    if (state === "queued") task.ui.status.textContent = t("queued");
    if (state === "uploading") task.ui.status.textContent = t("uploading");
    if (state === "done") task.ui.status.textContent = t("done");
    if (state === "cancelled") task.ui.status.textContent = t("cancelled");
    if (state === "error") task.ui.status.textContent = t("failed");
    updateSummary();
  }

  function setProgress(task, loaded, total) {
    var pct = total > 0 ? Math.min(100, Math.floor((loaded / total) * 100)) : 0;
    task.ui.progress.value = pct;
    task.ui.percent.textContent = pct + "%";
    task.ui.progress.setAttribute("aria-valuetext", pct + "%");
  }

  function addFile(file) {
    var tpl = els.template.content.firstElementChild;
    var row = tpl.cloneNode(true);
    var task = {
      id: nextId++,
      file: file,
      row: row,
      xhr: null,
      state: "queued",
      retryable: true,
      link: "",
      thumbLink: "",
      thumbUrl: "",
      ui: {
        thumb: row.querySelector(".thumb"),
        img: row.querySelector(".thumb-img"),
        name: row.querySelector(".file-name"),
        size: row.querySelector(".file-size"),
        progress: row.querySelector(".file-progress"),
        percent: row.querySelector(".file-percent"),
        status: row.querySelector(".file-status"),
        error: row.querySelector(".file-error"),
        link: row.querySelector(".file-link"),
        replicas: row.querySelector(".replicas"),
        cancel: row.querySelector(".btn-cancel"),
        copy: row.querySelector(".btn-copy"),
        copyThumb: row.querySelector(".btn-copy-thumb"),
        retry: row.querySelector(".btn-retry"),
        remove: row.querySelector(".btn-remove")
      }
    };
    row.id = "file-" + task.id;
    row.setAttribute("data-id", String(task.id));
    row.setAttribute("data-name", file.name);
    task.ui.name.textContent = file.name;
    task.ui.name.title = file.name;
    task.ui.size.textContent = formatSize(file.size);
    task.ui.progress.id = "progress-" + task.id;
    task.ui.progress.setAttribute("aria-label", file.name);
    task.ui.cancel.textContent = t("cancel");
    task.ui.copy.textContent = t("copy");
    task.ui.copyThumb.textContent = t("copyThumb");
    task.ui.retry.textContent = t("retry");
    task.ui.remove.textContent = t("remove");
    task.ui.cancel.setAttribute("aria-label", t("cancel") + ": " + file.name);
    task.ui.copy.setAttribute("aria-label", t("copy") + ": " + file.name);
    task.ui.copyThumb.setAttribute("aria-label", t("copyThumb") + ": " + file.name);
    task.ui.retry.setAttribute("aria-label", t("retry") + ": " + file.name);
    task.ui.remove.setAttribute("aria-label", t("remove") + ": " + file.name);

    // Preview. A file that is not really an image simply shows no preview.
    if (/^image\//i.test(file.type) || !file.type) {
      task.thumbUrl = URL.createObjectURL(file);
      task.ui.img.alt = file.name;
      task.ui.img.addEventListener("error", function () {
        showNoPreview(task);
      });
      task.ui.img.src = task.thumbUrl;
    } else {
      showNoPreview(task);
    }

    task.ui.cancel.addEventListener("click", function () { cancel(task); });
    task.ui.copy.addEventListener("click", function () {
      copyText(task.link, task.ui.copy, t("copy"));
    });
    task.ui.copyThumb.addEventListener("click", function () {
      copyText(task.thumbLink, task.ui.copyThumb, t("copyThumb"));
    });
    task.ui.retry.addEventListener("click", function () { retry(task); });
    task.ui.remove.addEventListener("click", function () { removeTask(task); });

    tasks.push(task);
    els.list.appendChild(row);
    setProgress(task, 0, 1);

    // Refuse what cannot be an image before sending a single byte.
    if (file.type && !/^image\//i.test(file.type)) {
      fail(task, t("errNotImage", { type: file.type }), false);
      return;
    }
    if (file.size === 0) {
      fail(task, t("errEmpty"), false);
      return;
    }
    setState(task, "queued");
    waiting.push(task);
  }

  function showNoPreview(task) {
    if (task.thumbUrl) {
      URL.revokeObjectURL(task.thumbUrl);
      task.thumbUrl = "";
    }
    task.ui.img.remove();
    task.ui.thumb.textContent = t("noPreview");
  }

  /* The server's thumbnail of a stored file (SPEC 2.7) takes the local
     preview's place once it has loaded; if it cannot load (another host
     than the page's, a busy server), the local preview stays. */
  function showServerThumbnail(task) {
    var img = new Image();
    img.alt = task.file.name;
    img.className = "thumb-img";
    img.addEventListener("load", function () {
      if (task.thumbUrl) {
        URL.revokeObjectURL(task.thumbUrl);
        task.thumbUrl = "";
      }
      task.ui.thumb.textContent = "";
      task.ui.thumb.appendChild(img);
      task.ui.img = img;
    });
    img.src = task.thumbLink;
  }

  function addFiles(fileList) {
    var files = Array.prototype.slice.call(fileList || []);
    if (!files.length) return;
    if (!credential) {
      askForCredential("");
      return;
    }
    files.forEach(addFile);
    pump();
  }

  /* ---------- uploading ---------- */

  function pump() {
    while (active < MAX_PARALLEL && waiting.length) {
      start(waiting.shift());
    }
    updateSummary();
  }

  function start(task) {
    if (resumable(task.file)) {
      startTus(task);
      return;
    }
    var xhr = new XMLHttpRequest();
    task.xhr = xhr;
    active++;
    setState(task, "uploading");
    setProgress(task, 0, 1);

    var finished = false;
    function finish() {
      if (finished) return false;
      finished = true;
      active--;
      task.xhr = null;
      setTimeout(pump, 0);
      return true;
    }

    xhr.open("POST", UPLOAD_URL, true);
    if (credential.token) {
      xhr.setRequestHeader("Authorization", "Bearer " + credential.token);
    } else {
      xhr.setRequestHeader("X-Security-Key", credential.key);
    }
    xhr.setRequestHeader("Accept", "application/json");

    xhr.upload.onprogress = function (ev) {
      if (ev.lengthComputable) {
        setProgress(task, ev.loaded, ev.total);
      }
    };
    xhr.upload.onload = function () {
      if (task.state === "uploading") {
        setProgress(task, 1, 1);
        task.ui.status.textContent = t("processing");
      }
    };
    xhr.onload = function () {
      if (!finish()) return;
      handleAnswer(task, xhr.status, xhr.responseText);
    };
    xhr.onerror = function () {
      if (!finish()) return;
      fail(task, t("err0"), true);
    };
    xhr.ontimeout = xhr.onerror;
    xhr.onabort = function () {
      if (!finish()) return;
      setState(task, "cancelled");
    };

    var form = new FormData();
    form.append("file", task.file, task.file.name);
    xhr.send(form);
  }

  function parseJson(text) {
    try {
      return JSON.parse(text);
    } catch (e) {
      return null;
    }
  }

  function statusMessage(status) {
    var known = { 0: "err0", 400: "err400", 403: "err403", 408: "err408", 413: "err413",
      415: "err415", 500: "err500", 507: "err507" };
    if (known[status]) return t(known[status]);
    return t("errOther", { status: status });
  }

  function handleAnswer(task, status, text) {
    var body = parseJson(text);
    var resp = body && body.resp ? body.resp : null;
    var ok = status >= 200 && status < 300 && resp && Number(resp.success) === 1;

    if (!ok) {
      var msg;
      if (status >= 200 && status < 300) {
        msg = resp ? t("errOther", { status: status }) : t("errBadAnswer", { status: status });
      } else {
        msg = statusMessage(status);
      }
      var serverError = resp && resp.error ? String(resp.error) : "";
      if (serverError) msg += "\n" + t("serverSaid", { error: serverError });
      // Retrying the same bytes cannot help for these.
      var final = status === 400 || status === 413 || status === 415;
      fail(task, msg, !final);
      if (status === 403) askForCredential(t("credentialRefused"));
      return;
    }

    var info = Array.isArray(resp.files) && resp.files.length ? resp.files[0] : null;
    showStored(task, (info && info.link) || resp.link || "", info);
  }

  /* A stored file's row: its link, thumbnail, hash and replicas. `info` is
     the file's entry of the answer (or null). */
  function showStored(task, link, info) {
    task.link = String(link);
    task.thumbLink = task.link ? task.link + "-t.jpg" : "";
    task.ui.link.textContent = task.link;
    task.ui.link.href = task.link;
    task.row.setAttribute("data-thumb", task.thumbLink);
    if (task.thumbLink) showServerThumbnail(task);
    if (info && info.path) task.row.setAttribute("data-path", String(info.path));
    if (info && info.sha256) task.row.setAttribute("data-sha256", String(info.sha256));
    if (info && typeof info.size === "number") task.ui.size.textContent = formatSize(info.size);
    renderReplicas(task, info ? info.replicas : undefined);
    task.ui.error.textContent = "";
    setState(task, "done");
  }

  function renderReplicas(task, replicas) {
    var ul = task.ui.replicas;
    ul.textContent = "";
    if (!Array.isArray(replicas)) return; // server did not report replication
    if (!replicas.length) {
      var none = document.createElement("li");
      none.className = "replica-none";
      none.textContent = t("replicasNone");
      ul.appendChild(none);
      return;
    }
    var anyQueued = false;
    replicas.forEach(function (r) {
      var li = document.createElement("li");
      var peer = String(r.peer || "?");
      var good = Number(r.ok) === 1;
      var err = r.error ? String(r.error) : "";
      li.className = "replica";
      li.setAttribute("data-peer", peer);
      li.setAttribute("data-ok", good ? "1" : "0");
      if (good) {
        li.textContent = "✓ " + t("replicaOk", { peer: peer });
        li.title = t("replicaTitleOk");
      } else {
        // ok=0: written to the retry journal, copied later. Not a failure of the upload.
        var queued = Number(r.journaled) === 1 || r.journaled === undefined;
        li.textContent = (queued ? "↻ " : "✗ ") + t(queued ? "replicaQueued" : "replicaFailed", { peer: peer });
        li.title = t(queued ? "replicaTitleQueued" : "replicaTitleFailed");
        if (queued) anyQueued = true;
        li.setAttribute("data-journaled", queued ? "1" : "0");
        if (err) {
          var detail = document.createElement("span");
          detail.className = "replica-detail";
          detail.textContent = err;
          li.appendChild(detail);
        }
      }
      ul.appendChild(li);
    });
    if (anyQueued) {
      var note = document.createElement("li");
      note.className = "replica-note";
      note.textContent = t("replicaNote");
      ul.appendChild(note);
    }
  }

  function fail(task, message, retryable) {
    task.retryable = !!retryable;
    task.ui.error.textContent = message;
    setState(task, "error");
  }

  function cancel(task) {
    if (task.state === "uploading" && task.stopTus) {
      task.stopTus();
    } else if (task.state === "uploading" && task.xhr) {
      task.xhr.abort(); // onabort sets the state
    } else if (task.state === "queued") {
      var i = waiting.indexOf(task);
      if (i >= 0) waiting.splice(i, 1);
      setState(task, "cancelled");
    }
  }

  function retry(task) {
    if (task.state !== "error" && task.state !== "cancelled") return;
    task.ui.error.textContent = "";
    task.ui.replicas.textContent = "";
    setProgress(task, 0, 1);
    setState(task, "queued");
    waiting.push(task);
    pump();
  }

  function removeTask(task) {
    if (task.state === "queued" || task.state === "uploading") return;
    if (task.thumbUrl) URL.revokeObjectURL(task.thumbUrl);
    var i = tasks.indexOf(task);
    if (i >= 0) tasks.splice(i, 1);
    var next = task.row.nextElementSibling || task.row.previousElementSibling;
    task.row.remove();
    // keep keyboard focus somewhere sensible
    var target = next && next.querySelector("button:not([hidden])");
    (target || els.drop).focus();
    updateSummary();
  }

  /* ---------- resumable uploads (tus) ---------- */

  var tusThreshold = TUS_DEFAULT_THRESHOLD;

  function resumable(file) {
    return !!window.tus && tus.isSupported && file.size > tusThreshold;
  }

  function credentialHeaders() {
    return credential.token
      ? { Authorization: "Bearer " + credential.token }
      : { "X-Security-Key": credential.key };
  }

  /* Network errors and a server that is busy or restarting are worth
     waiting for; an answer about the file itself (too large, not an image,
     refused credential) is not. */
  function tusShouldRetry(err) {
    var status = err.originalResponse ? err.originalResponse.getStatus() : 0;
    var transient = status === 0 || status === 409 || status === 423 || status === 429 ||
      status === 500 || status === 502 || status === 503 || status === 504;
    return transient && navigator.onLine !== false;
  }

  function startTus(task) {
    active++;
    setState(task, "uploading");
    setProgress(task, 0, 1);
    task.networkError = false;

    var finished = false;
    function finish() {
      if (finished) return false;
      finished = true;
      active--;
      task.stopTus = null;
      setTimeout(pump, 0);
      return true;
    }

    var metadata = { filename: task.file.name };
    if (task.file.type) metadata.filetype = task.file.type;
    var upload = new tus.Upload(task.file, {
      endpoint: TUS_ENDPOINT,
      chunkSize: TUS_CHUNK_BYTES,
      retryDelays: TUS_RETRY_DELAYS,
      onShouldRetry: tusShouldRetry,
      headers: credentialHeaders(),
      metadata: metadata,
      // A stored file is not offered for resuming after a reload.
      removeFingerprintOnSuccess: true,
      onUploadUrlAvailable: showInterrupted,
      onProgress: function (sent, total) {
        setProgress(task, sent, total);
        task.ui.status.textContent = t(sent === total ? "processing" : "uploading");
      },
      onSuccess: function (payload) {
        if (!finish()) return;
        tusStored(task, payload.lastResponse);
        showInterrupted();
      },
      onError: function (err) {
        if (!finish()) return;
        tusFailed(task, err);
      }
    });
    task.tusUpload = upload;
    // Cancel also ends the upload on the server, so its staged bytes go now.
    task.stopTus = function () {
      if (!finish()) return;
      upload.abort(true).then(showInterrupted, showInterrupted);
      setState(task, "cancelled");
    };
    // The same file (name, type, size, date) interrupted earlier, on this
    // page or before a reload: go on from the server's offset.
    upload.findPreviousUploads().then(function (previous) {
      if (finished) return;
      if (previous.length) {
        previous.sort(function (a, b) {
          return String(b.creationTime).localeCompare(String(a.creationTime));
        });
        upload.resumeFromPreviousUpload(previous[0]);
        task.ui.status.textContent = t("resuming");
      }
      upload.start();
    });
  }

  /* The last answer (the final PATCH, or the HEAD of an upload finished
     before a reload) carries the link and the file's entry as JSON. */
  function tusStored(task, res) {
    var info = parseJson(res.getHeader("X-Upload-Result") || "");
    var link = res.getHeader("X-Upload-Link") || (info && info.link) || "";
    if (!link) {
      fail(task, t("errBadAnswer", { status: res.getStatus() }), true);
      return;
    }
    showStored(task, link, info && typeof info === "object" ? info : null);
  }

  function tusFailed(task, err) {
    var res = err && err.originalResponse;
    var status = res ? res.getStatus() : 0;
    var msg = status === 404 ? t("err404") : statusMessage(status);
    var body = res ? res.getBody() : "";
    var answer = parseJson(body || "");
    var serverError = answer && answer.resp && answer.resp.error ? answer.resp.error
      : answer && answer.error ? answer.error
      : body && body.length < 300 && !/</.test(body) ? body.trim() : "";
    if (serverError) msg += "\n" + t("serverSaid", { error: String(serverError) });
    task.networkError = status === 0;
    var final = status === 400 || status === 413 || status === 415;
    fail(task, msg, !final);
    if (status === 401 || status === 403) askForCredential(t("credentialRefused"));
    if (status === 404 || final) showInterrupted();
  }

  /* Uploads interrupted before this page was (re)loaded, as tus-js-client
     remembers them in localStorage; those of this page's rows are shown
     there. A file cannot be read again without the user choosing it, so
     the page names them and waits. */
  function interruptedUploads() {
    return tus.defaultOptions.urlStorage.findAllUploads().then(function (all) {
      var own = tasks.map(function (x) { return x.tusUpload && x.tusUpload.url; });
      return all.filter(function (entry) { return own.indexOf(entry.uploadUrl) < 0; });
    });
  }

  function showInterrupted() {
    if (!window.tus || !tus.canStoreURLs) return;
    interruptedUploads().then(function (waiting) {
      var list = document.getElementById("resume-list");
      list.textContent = "";
      waiting.forEach(function (entry) {
        var li = document.createElement("li");
        var name = entry.metadata && entry.metadata.filename ? String(entry.metadata.filename) : "?";
        li.textContent = name + " (" + formatSize(Number(entry.size)) + ")";
        li.setAttribute("data-name", name);
        list.appendChild(li);
      });
      document.getElementById("resume-notice").hidden = !waiting.length;
    });
  }

  function forgetInterrupted() {
    interruptedUploads().then(function (waiting) {
      return Promise.all(waiting.map(function (entry) {
        return tus.defaultOptions.urlStorage.removeUpload(entry.urlStorageKey);
      }));
    }).then(showInterrupted);
  }

  /* ---------- summary and toolbar ---------- */

  function updateSummary() {
    var c = { done: 0, error: 0, cancelled: 0, uploading: 0, queued: 0 };
    tasks.forEach(function (x) { c[x.state]++; });
    var total = tasks.length;
    if (!total) {
      els.summary.textContent = "";
    } else {
      var s = (c.uploading || c.queued)
        ? t("summaryActive", { done: c.done, total: total, active: c.uploading, queued: c.queued })
        : t("summary", { done: c.done, total: total });
      if (c.error) s += t("summaryFailed", { failed: c.error });
      if (c.cancelled) s += t("summaryCancelled", { cancelled: c.cancelled });
      els.summary.textContent = s;
    }
    els.copyAll.hidden = c.done < 2;
    els.clear.hidden = c.done + c.error + c.cancelled === 0;
  }

  function clearFinished() {
    tasks.slice().forEach(function (task) {
      if (task.state === "done" || task.state === "error" || task.state === "cancelled") {
        if (task.thumbUrl) URL.revokeObjectURL(task.thumbUrl);
        task.row.remove();
        tasks.splice(tasks.indexOf(task), 1);
      }
    });
    els.drop.focus();
    updateSummary();
  }

  /* ---------- clipboard ---------- */

  function copyFallback(text) {
    // For pages served over plain http (not a secure context): no async clipboard there.
    var ta = document.createElement("textarea");
    ta.value = text;
    ta.setAttribute("readonly", "");
    ta.style.position = "fixed";
    ta.style.top = "0";
    ta.style.left = "0";
    ta.style.width = "1px";
    ta.style.height = "1px";
    ta.style.opacity = "0";
    document.body.appendChild(ta);
    var prev = document.activeElement;
    ta.focus();
    ta.select();
    ta.setSelectionRange(0, text.length);
    var ok = false;
    try {
      ok = document.execCommand("copy");
    } catch (e) {
      ok = false;
    }
    ta.remove();
    if (prev && prev.focus) prev.focus();
    return ok;
  }

  function copyText(text, button, label) {
    if (!text) return;
    function report(ok) {
      button.textContent = ok ? t("copied") : t("copyFailed");
      button.classList.toggle("is-copied", ok);
      clearTimeout(button._copyTimer);
      button._copyTimer = setTimeout(function () {
        button.textContent = label;
        button.classList.remove("is-copied");
      }, ok ? 1500 : 4000);
    }
    if (navigator.clipboard && window.isSecureContext) {
      navigator.clipboard.writeText(text).then(function () {
        report(true);
      }, function () {
        report(copyFallback(text));
      });
    } else {
      report(copyFallback(text));
    }
  }

  /* ---------- cluster footer: what /healthz says of the peers ---------- */

  var HEALTH_EVERY_MS = 30000;

  function peerState(name, health) {
    var breaker = health.breakers && health.breakers[name];
    if (breaker && breaker.open) return t("peerUnreachable", { name: name });
    var repair = health.repair && health.repair.peers && health.repair.peers[name];
    var last = repair && repair.last_pass;
    if (!last) return t("peerUnknown", { name: name });
    if (last.roots_agreed) return t("peerInSync", { name: name });
    if (!last.complete && last.last_error) return t("peerError", { name: name });
    return t("peerBehind", { name: name, fetched: last.files_fetched || 0 });
  }

  function showCluster(health) {
    var footer = document.getElementById("cluster");
    var server = t("clusterServer", { name: health.server || "?" });
    if (health.journal_backlog) server += " · " + t("clusterOwed", { n: health.journal_backlog });
    server += " · " + t("clusterChecked", { time: new Date().toLocaleTimeString() });
    document.getElementById("cluster-server").textContent = server;
    var list = document.getElementById("cluster-peers");
    list.textContent = "";
    (health.peers || []).forEach(function (name) {
      var li = document.createElement("li");
      li.textContent = peerState(name, health);
      list.appendChild(li);
    });
    footer.hidden = false;
  }

  function watchCluster() {
    var xhr = new XMLHttpRequest();
    xhr.open("GET", "/healthz", true);
    xhr.responseType = "json";
    xhr.onload = function () {
      if (xhr.response && typeof xhr.response === "object") showCluster(xhr.response);
    };
    xhr.send();
    window.setTimeout(watchCluster, HEALTH_EVERY_MS);
  }

  /* ---------- the credential ---------- */

  function showCredential() {
    var claims = credential && credential.token ? tokenClaims(credential.token) : null;
    els.credentialInfo.hidden = !claims;
    if (!claims) return;
    var time = new Date(claims.exp * 1000).toLocaleString();
    if (claims.exp * 1000 < Date.now()) {
      els.credentialInfo.textContent = t("tokenExpired", { time: time });
    } else if (typeof claims.max_files === "number") {
      els.credentialInfo.textContent = t("tokenInfoFiles", { n: claims.max_files, time: time });
    } else {
      els.credentialInfo.textContent = t("tokenInfo", { time: time });
    }
  }

  /* The field for a key or a token; uploads wait until one is given. */
  function askForCredential(problem) {
    els.credentialError.textContent = problem || "";
    els.credentialError.hidden = !problem;
    els.credentialForm.hidden = false;
    if (!credential) els.drop.hidden = true;
    els.credentialInput.focus();
  }

  function useCredential(ev) {
    ev.preventDefault();
    var given = credentialOf(els.credentialInput.value);
    if (!given) return;
    credential = given;
    els.credentialInput.value = "";
    els.credentialForm.hidden = true;
    els.drop.hidden = false;
    showCredential();
    els.drop.focus();
  }

  /* ---------- setup ---------- */

  function applyLanguage() {
    document.documentElement.lang = lang === "zh" ? "zh-CN" : "en";
    document.title = t("pageTitle");
    Array.prototype.forEach.call(document.querySelectorAll("[data-i18n]"), function (el) {
      el.textContent = t(el.getAttribute("data-i18n"));
    });
    els.drop.setAttribute("aria-label", t("dropLabel"));
  }

  function hasFiles(ev) {
    var types = ev.dataTransfer && ev.dataTransfer.types;
    return !!types && Array.prototype.indexOf.call(types, "Files") >= 0;
  }

  function init() {
    els.drop = document.getElementById("drop-zone");
    els.input = document.getElementById("file-input");
    els.list = document.getElementById("file-list");
    els.summary = document.getElementById("summary");
    els.copyAll = document.getElementById("copy-all");
    els.clear = document.getElementById("clear-finished");
    els.template = document.getElementById("row-template");
    els.credentialForm = document.getElementById("credential-form");
    els.credentialInput = document.getElementById("credential-input");
    els.credentialError = document.getElementById("credential-error");
    els.credentialInfo = document.getElementById("credential-info");

    applyLanguage();
    els.credentialForm.addEventListener("submit", useCredential);
    if (credential) {
      showCredential();
    } else {
      askForCredential("");
    }

    els.drop.addEventListener("click", function () {
      els.input.click();
    });
    els.drop.addEventListener("keydown", function (ev) {
      if (ev.key === "Enter" || ev.key === " " || ev.key === "Spacebar") {
        ev.preventDefault();
        els.input.click();
      }
    });
    els.input.addEventListener("change", function () {
      addFiles(els.input.files);
      els.input.value = ""; // choosing the same file again fires change again
    });

    var depth = 0;
    els.drop.addEventListener("dragenter", function (ev) {
      if (!hasFiles(ev)) return;
      ev.preventDefault();
      depth++;
      els.drop.classList.add("is-dragover");
    });
    els.drop.addEventListener("dragover", function (ev) {
      if (!hasFiles(ev)) return;
      ev.preventDefault();
      ev.dataTransfer.dropEffect = "copy";
    });
    els.drop.addEventListener("dragleave", function () {
      depth = Math.max(0, depth - 1);
      if (!depth) els.drop.classList.remove("is-dragover");
    });
    els.drop.addEventListener("drop", function (ev) {
      ev.preventDefault();
      depth = 0;
      els.drop.classList.remove("is-dragover");
      addFiles(ev.dataTransfer && ev.dataTransfer.files);
    });
    // A file dropped next to the zone must not make the browser navigate away to it.
    ["dragover", "drop"].forEach(function (type) {
      window.addEventListener(type, function (ev) {
        if (hasFiles(ev)) ev.preventDefault();
      });
    });

    document.addEventListener("paste", function (ev) {
      var files = ev.clipboardData && ev.clipboardData.files;
      if (files && files.length) {
        ev.preventDefault();
        addFiles(files);
      }
    });

    els.copyAll.addEventListener("click", function () {
      var links = tasks.filter(function (x) { return x.state === "done" && x.link; })
        .map(function (x) { return x.link; });
      copyText(links.join("\n"), els.copyAll, t("copyAll"));
    });
    els.clear.addEventListener("click", clearFinished);

    window.addEventListener("beforeunload", function (ev) {
      if (active > 0 || waiting.length > 0) {
        ev.preventDefault();
        ev.returnValue = t("leaveWarning");
        return ev.returnValue;
      }
    });

    var threshold = parseInt(document.documentElement.getAttribute("data-tus-threshold"), 10);
    if (threshold >= 0) tusThreshold = threshold;
    if (window.tus && tus.canStoreURLs) {
      document.getElementById("resume-forget").addEventListener("click", forgetInterrupted);
      showInterrupted();
    }
    // Back online: failed resumable uploads go on without a click.
    window.addEventListener("online", function () {
      tasks.forEach(function (x) {
        if (x.state === "error" && x.networkError) retry(x);
      });
    });

    updateSummary();
    watchCluster();
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", init);
  } else {
    init();
  }
})();
