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

    /** Per ASCII byte, what a token holds in its place (lowercased or as it is), 0 outside tokens. */
    private static final byte[] AS_IS = new byte[128];
    private static final byte[] LOWERED = new byte[128];

    static {
        for (int c = 0; c < AS_IS.length; c++) {
            if (TokenRuns.inToken(c)) {
                AS_IS[c] = (byte) c;
                LOWERED[c] = (byte) (c >= 'A' && c <= 'Z' ? c | 0x20 : c);
            }
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
     * text, as two tokens are at least one byte apart in it. One pass: each token byte is written
     * as it is read, and a run shorter than a token is taken back at the byte that ends it. */
    static byte[] joined(byte[] text, boolean lowercase) {
        byte[] tokenByte = lowercase ? LOWERED : AS_IS;
        byte[] out = new byte[text.length + 1];
        int length = 0;
        int runStart = 0;
        for (byte b : text) {
            byte written = tokenByte[b];
            if (written != 0) {
                out[length++] = written;
            } else {
                length = endRun(out, length, runStart);
                runStart = length;
            }
        }
        length = endRun(out, length, runStart);
        return length == out.length ? out : Arrays.copyOf(out, length);
    }

    /** The length of {@code out} once the run written since {@code runStart} ends: followed by a
     * space when it is long enough to be a token, else taken back. */
    private static int endRun(byte[] out, int length, int runStart) {
        if (length - runStart < TokenRuns.MIN_LENGTH) {
            return runStart;
        }
        out[length] = ' ';
        return length + 1;
    }
}
