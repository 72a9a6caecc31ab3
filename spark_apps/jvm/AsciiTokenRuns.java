package nbknn.jvm;

import org.apache.spark.sql.api.java.UDF2;

/**
 * {@link TokenRuns} of an all-ASCII text straight from its raw form, lowercased when the second
 * argument says so; null for a null text or one with any other character. The tokeniser's first
 * three steps (pin to the Unicode table, normalise, lowercase) leave an ASCII text as it is but
 * for the case of its letters, so this gives what the whole pipeline gives, without Spark's passes
 * over the text for those steps (counting its characters to find it is ASCII, and lowercasing it,
 * took about a third of the JVM's time in the prediction's tasks on 20 Newsgroups, in a flight
 * recording). nbknn/inputs/tokenizer.py sends the texts it returns null for down the general path.
 */
public final class AsciiTokenRuns implements UDF2<String, Boolean, String[]> {
    private static final long serialVersionUID = 1L;

    @Override
    public String[] call(String text, Boolean lowercase) {
        return text == null || !TokenRuns.isAscii(text) ? null : TokenRuns.tokens(text, lowercase);
    }
}
