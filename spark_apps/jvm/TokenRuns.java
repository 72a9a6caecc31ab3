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
    private static final int MIN_LENGTH = 2;
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

    @Override
    public String[] call(String text) {
        if (text == null) {
            return null;
        }
        ArrayList<String> tokens = new ArrayList<>();
        scan(text, (start, end) -> tokens.add(text.substring(start, end)));
        return tokens.isEmpty() ? NO_TOKENS : tokens.toArray(NO_TOKENS);
    }
}
