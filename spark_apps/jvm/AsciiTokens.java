package nbknn.jvm;

import java.util.ArrayList;

/**
 * The tokens of an all-ASCII text, taken straight from the text as it arrives. The tokeniser's
 * first three steps (pin to the Unicode table, normalise, lowercase) leave such a text as it is
 * but for the case of its letters, so {@link TokenRuns} over it, each token lowercased when asked,
 * gives what the whole pipeline gives, without Spark's passes over the text for those steps
 * (counting its characters to find it is ASCII, and lowercasing it, took about a third of the
 * JVM's time in the prediction's tasks on 20 Newsgroups, in a flight recording). A text with any
 * other character is left to the general path: these functions return null for it.
 */
final class AsciiTokens {
    private AsciiTokens() {
    }

    static boolean isAscii(String text) {
        for (int i = 0, n = text.length(); i < n; i++) {
            if (text.charAt(i) >= 0x80) {
                return false;
            }
        }
        return true;
    }

    /** Appends text[start, end) to {@code out}, its ASCII capitals lowercased when asked. */
    static void append(StringBuilder out, String text, int start, int end, boolean lowercase) {
        if (!lowercase) {
            out.append(text, start, end);
            return;
        }
        for (int i = start; i < end; i++) {
            char c = text.charAt(i);
            out.append(c >= 'A' && c <= 'Z' ? (char) (c | 0x20) : c);
        }
    }

    /** The tokens as a list, or null when the text is not all ASCII (the text must not be null). */
    static String[] runs(String text, boolean lowercase) {
        if (!isAscii(text)) {
            return null;
        }
        ArrayList<String> tokens = new ArrayList<>();
        StringBuilder token = new StringBuilder();
        TokenRuns.scan(text, (start, end) -> {
            token.setLength(0);
            append(token, text, start, end, lowercase);
            tokens.add(token.toString());
        });
        return tokens.toArray(new String[0]);
    }

    /** The tokens joined by single spaces ("" for none), or null when the text is not all ASCII. */
    static String joined(String text, boolean lowercase) {
        if (!isAscii(text)) {
            return null;
        }
        StringBuilder joined = new StringBuilder(text.length());
        TokenRuns.scan(text, (start, end) -> {
            if (joined.length() > 0) {
                joined.append(' ');
            }
            append(joined, text, start, end, lowercase);
        });
        return joined.toString();
    }
}
