// Prints a token minted by the C# snippet of docs/keys-and-tokens.md (examples/tokens/UploadToken.cs),
// so the test can upload with it: kid secret ttl_secs max_files max_bytes [origin].
using System;

class MintToken
{
    static void Main(string[] args)
    {
        string origin = args.Length > 5 ? args[5] : null;
        Console.Write(UploadToken.Mint(args[0], args[1], int.Parse(args[2]), int.Parse(args[3]), long.Parse(args[4]), origin));
    }
}
