package nbknn.jvm;

import java.util.ArrayList;

import org.apache.spark.sql.api.java.UDF1;

/**
 * The tokens of the default pattern {@code [\p{L}\p{M}\p{N}]{2,}}: every maximal run of at least
 * two code points that are letters, combining marks or numbers, in order. Equal to Java's regex of
 * that pattern by construction (its {@code \p{L}}, {@code \p{M}} and {@code \p{N}} test
 * {@link Character#getType} as this does, and a greedy class repetition takes whole runs), in one
 * pass over the text and without the regex engine's per-character matching, which made up most
 * of the tokeniser's time. nbknn/inputs/tokenizer.py registers it and says when it is used.
 */
public final class TokenRuns implements UDF1<String, String[]> {
    private static final long serialVersionUID = 1L;

    private static final int TOKEN_TYPES = (1 << Character.UPPERCASE_LETTER) | (1 << Character.LOWERCASE_LETTER)
        | (1 << Character.TITLECASE_LETTER) | (1 << Character.MODIFIER_LETTER) | (1 << Character.OTHER_LETTER)
        | (1 << Character.NON_SPACING_MARK) | (1 << Character.ENCLOSING_MARK)
        | (1 << Character.COMBINING_SPACING_MARK) | (1 << Character.DECIMAL_DIGIT_NUMBER)
        | (1 << Character.LETTER_NUMBER) | (1 << Character.OTHER_NUMBER);
    static final int MIN_LENGTH = 2;
    private static final String[] NO_TOKENS = new String[0];

    /** Receives each token as the bounds of its UTF-16 units in the text. */
    interface TokenSink {
        void token(int start, int end);
    }

    static boolean inToken(int codePoint) {
        if (codePoint < 0x80) {
            // The ASCII letters and digits are the only ASCII code points of those types.
            return (codePoint | 0x20) >= 'a' && (codePoint | 0x20) <= 'z' || codePoint >= '0' && codePoint <= '9';
        }
        return ((TOKEN_TYPES >> Character.getType(codePoint)) & 1) != 0;
    }

    static void scan(String text, TokenSink sink) {
        int end = text.length();
        int at = 0;
        while (at < end) {
            int codePoint = text.codePointAt(at);
            if (!inToken(codePoint)) {
                at += Character.charCount(codePoint);
                continue;
            }
            int start = at;
            int length = 0;
            while (at < end && inToken(codePoint = text.codePointAt(at))) {
                at += Character.charCount(codePoint);
                length++;
            }
            if (length >= MIN_LENGTH) {
                sink.token(start, at);
            }
        }
    }

    /** Whether every character of {@code text} is ASCII. */
    static boolean isAscii(String text) {
        for (int i = 0, n = text.length(); i < n; i++) {
            if (text.charAt(i) >= 0x80) {
                return false;
            }
        }
        return true;
    }

    /** Appends text[start, end) to {@code out}, its ASCII capitals lowercased when asked. */
    private static void copy(StringBuilder out, String text, int start, int end, boolean lowercaseAscii) {
        if (!lowercaseAscii) {
            out.append(text, start, end);
            return;
        }
        for (int i = start; i < end; i++) {
            char c = text.charAt(i);
            out.append(c >= 'A' && c <= 'Z' ? (char) (c | 0x20) : c);
        }
    }

    /** The tokens of a text in order, their ASCII capitals lowercased when asked. */
    static String[] tokens(String text, boolean lowercaseAscii) {
        ArrayList<String> tokens = new ArrayList<>();
        StringBuilder token = new StringBuilder();
        scan(text, (start, end) -> {
            if (lowercaseAscii) {
                token.setLength(0);
                copy(token, text, start, end, true);
                tokens.add(token.toString());
            } else {
                tokens.add(text.substring(start, end));
            }
        });
        return tokens.isEmpty() ? NO_TOKENS : tokens.toArray(NO_TOKENS);
    }

    /** The tokens of a text, each followed by a space ("" for none). */
    static String joined(String text) {
        StringBuilder joined = new StringBuilder(text.length() + 1);
        scan(text, (start, end) -> joined.append(text, start, end).append(' '));
        return joined.toString();
    }

    @Override
    public String[] call(String text) {
        return text == null ? null : tokens(text, false);
    }
}
