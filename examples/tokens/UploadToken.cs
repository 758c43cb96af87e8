// Mints an upload token (docs/keys-and-tokens.md). .NET Framework 4, no packages.
using System;
using System.Security.Cryptography;
using System.Text;

public static class UploadToken
{
    // origin: the page's origin, e.g. "https://www.example.com"; null: any.
    public static string Mint(string kid, string secret, int ttlSecs, int maxFiles, long maxBytes, string origin)
    {
        long exp = (long)(DateTime.UtcNow - new DateTime(1970, 1, 1)).TotalSeconds + ttlSecs;
        string claims = string.Format("{{\"kid\":\"{0}\",\"exp\":{1},\"jti\":\"{2}\",\"max_files\":{3},\"max_bytes\":{4}{5}}}",
            kid, exp, Guid.NewGuid().ToString("N"), maxFiles, maxBytes,
            origin == null ? "" : ",\"origin\":\"" + origin + "\"");
        string body = Base64Url(Encoding.UTF8.GetBytes(claims));
        using (HMACSHA256 hmac = new HMACSHA256(Encoding.UTF8.GetBytes(secret)))
            return body + "." + Base64Url(hmac.ComputeHash(Encoding.ASCII.GetBytes(body)));
    }

    static string Base64Url(byte[] bytes)
    {
        return Convert.ToBase64String(bytes).TrimEnd('=').Replace('+', '-').Replace('/', '_');
    }
}
