package nbknn.jvm;

import org.apache.spark.sql.api.java.UDF2;

/** {@link TokenRuns} of an all-ASCII text straight from its raw form, lowercased when the second
 * argument says so; null for a null text or one with any other character (see {@link AsciiTokens}). */
public final class AsciiTokenRuns implements UDF2<String, Boolean, String[]> {
    private static final long serialVersionUID = 1L;

    @Override
    public String[] call(String text, Boolean lowercase) {
        return text == null ? null : AsciiTokens.runs(text, lowercase);
    }
}
