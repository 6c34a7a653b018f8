// Independent check of an RFC 4998 evidence record with BouncyCastle (Debian libbcpkix-java):
// java ErsCheck RECORD.ers DOCUMENT  -> prints "ERS OK" and exits 0, or an error and exits 1.
// BouncyCastle validates the hash tree and the last timestamp's signature; it does not check
// the TSA chain to a trust anchor (OpenSSL and rfc3161-client do that in the same tests).
import java.nio.file.Files;
import java.nio.file.Paths;
import java.security.Security;
import java.util.Date;
import org.bouncycastle.cert.X509CertificateHolder;
import org.bouncycastle.cms.jcajce.JcaSimpleSignerInfoVerifierBuilder;
import org.bouncycastle.jce.provider.BouncyCastleProvider;
import org.bouncycastle.operator.jcajce.JcaDigestCalculatorProviderBuilder;
import org.bouncycastle.tsp.ers.ERSByteData;
import org.bouncycastle.tsp.ers.ERSEvidenceRecord;

public class ErsCheck {
    public static void main(String[] args) throws Exception {
        Security.addProvider(new BouncyCastleProvider());
        byte[] record = Files.readAllBytes(Paths.get(args[0]));
        byte[] document = Files.readAllBytes(Paths.get(args[1]));
        try {
            ERSEvidenceRecord ers = new ERSEvidenceRecord(
                record, new JcaDigestCalculatorProviderBuilder().setProvider("BC").build());
            ers.validatePresent(new ERSByteData(document), new Date());
            X509CertificateHolder cert = ers.getSigningCertificate();
            ers.validate(new JcaSimpleSignerInfoVerifierBuilder().setProvider("BC").build(cert));
            System.out.println("ERS OK");
        } catch (Exception e) {
            System.out.println("ERS FAILED: " + e);
            System.exit(1);
        }
    }
}
