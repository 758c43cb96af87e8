// The third-party client from the original DotNetMultiServerUpload README,
// unchanged but for where the URL, key and file come from (the command line
// instead of constants), so the test can point it at a server it started.
using System;
using System.Net;

class Upload
{
    static void Main(string[] args)
    {
        string host = args[0];
        string SecurityKey = args[1];
        string format = args[2]; //or json
        string file = args[3];

        WebClient wc = new WebClient();
        byte[] data = wc.UploadFile(host + "/do.ashx?action=upload&format=" + format + "&SecurityKey=" + SecurityKey, file);
        wc.Dispose();

        string xml = System.Text.Encoding.GetEncoding("utf-8").GetString(data);
        Console.Write(xml);
    }
}
