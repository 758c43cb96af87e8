<?php
// Mints an upload token (docs/keys-and-tokens.md). PHP 7.1+, no extensions.
function b64url(string $data): string {
    return rtrim(strtr(base64_encode($data), '+/', '-_'), '=');
}

function mint_upload_token(string $kid, string $secret, int $ttlSecs, int $maxFiles, int $maxBytes, ?string $origin = null): string {
    $claims = ['kid' => $kid, 'exp' => time() + $ttlSecs, 'jti' => bin2hex(random_bytes(16)),
               'max_files' => $maxFiles, 'max_bytes' => $maxBytes];
    if ($origin !== null) $claims['origin'] = $origin; // the page's origin, e.g. "https://www.example.com"
    $body = b64url(json_encode($claims, JSON_UNESCAPED_SLASHES));
    return $body . '.' . b64url(hash_hmac('sha256', $body, $secret, true));
}
