package nbknn.jvm;

import org.apache.spark.sql.api.java.UDF2;

/** {@link TokenText} of an all-ASCII text, as {@link AsciiTokenRuns} takes it, and "" (not null)
 * when it has no token; null for a null text or one with any other character. */
public final class AsciiTokenText implements UDF2<String, Boolean, String> {
    private static final long serialVersionUID = 1L;

    @Override
    public String call(String text, Boolean lowercase) {
        return text == null || !TokenRuns.isAscii(text) ? null : TokenRuns.joined(text, lowercase);
    }
}
