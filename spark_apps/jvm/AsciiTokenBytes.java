package nbknn.jvm;

import java.util.Arrays;

import org.apache.spark.sql.api.java.UDF2;

/**
 * {@link TokenText} of an all-ASCII text given as its UTF-8 bytes, lowercased when the second
 * argument says so, as bytes: "" (not null) when it has no token; null for a null text or one with
 * any byte beyond ASCII. Bytes in and out: a String argument or result would make Spark decode the
 * text into UTF-16 and encode the tokens back, and the tokens were copied through a StringBuilder
 * (together about half of this step's time in a flight recording of the prediction's tasks).
 * An ASCII text's tokens are its runs of at least two ASCII letters or digits, as
 * {@link TokenRuns#inToken} says for code points below 0x80.
 */
public final class AsciiTokenBytes implements UDF2<byte[], Boolean, byte[]> {
    private static final long serialVersionUID = 1L;

    private static final boolean[] IN_TOKEN = new boolean[128];

    static {
        for (int c = 0; c < IN_TOKEN.length; c++) {
            IN_TOKEN[c] = TokenRuns.inToken(c);
        }
    }

    @Override
    public byte[] call(byte[] text, Boolean lowercase) {
        return text == null || !isAscii(text) ? null : joined(text, lowercase);
    }

    static boolean isAscii(byte[] text) {
        int any = 0;
        for (byte b : text) {
            any |= b;
        }
        return any >= 0;
    }

    /** The tokens of an ASCII text, each followed by a space; at most one byte longer than the
     * text, as two tokens are at least one byte apart in it. */
    static byte[] joined(byte[] text, boolean lowercase) {
        byte[] out = new byte[text.length + 1];
        int length = 0;
        int at = 0;
        while (at < text.length) {
            if (!IN_TOKEN[text[at]]) {
                at++;
                continue;
            }
            int start = at;
            while (at < text.length && IN_TOKEN[text[at]]) {
                at++;
            }
            if (at - start < TokenRuns.MIN_LENGTH) {
                continue;
            }
            for (int i = start; i < at; i++) {
                byte b = text[i];
                out[length++] = lowercase && b >= 'A' && b <= 'Z' ? (byte) (b | 0x20) : b;
            }
            out[length++] = ' ';
        }
        return length == out.length ? out : Arrays.copyOf(out, length);
    }
}
