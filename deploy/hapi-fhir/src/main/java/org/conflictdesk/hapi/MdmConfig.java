package org.conflictdesk.hapi;

import ca.uhn.fhir.jpa.mdm.config.MdmConsumerConfig;
import ca.uhn.fhir.jpa.mdm.config.MdmSubmitterConfig;
import ca.uhn.fhir.jpa.model.config.SubscriptionSettings;
import ca.uhn.fhir.jpa.nickname.INicknameSvc;
import ca.uhn.fhir.jpa.nickname.NicknameSvc;
import ca.uhn.fhir.jpa.subscription.match.deliver.email.IEmailSender;
import ca.uhn.fhir.jpa.subscription.match.config.SubscriptionProcessorConfig;
import ca.uhn.fhir.jpa.subscription.submit.config.SubscriptionSubmitterConfig;
import ca.uhn.fhir.mdm.api.IMdmSettings;
import ca.uhn.fhir.mdm.rules.config.MdmRuleValidator;
import ca.uhn.fhir.mdm.rules.config.MdmSettings;
import org.hl7.fhir.dstu2.model.Subscription.SubscriptionChannelType;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.context.annotation.Import;
import org.springframework.core.io.DefaultResourceLoader;
import org.springframework.core.io.Resource;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;

/**
 * HAPI's MDM (master data management): every Patient written is matched against the others by the
 * rules in {@code conflictdesk.mdm.rules} (deploy/hapi-fhir/mdm-rules.json, versioned with the code)
 * and linked to a golden Patient (MATCH) or queued for a data steward (POSSIBLE_MATCH /
 * POSSIBLE_DUPLICATE); the {@code $mdm-*} operations answer on /fhir.
 *
 * <p>MDM rides on subscriptions: it creates a MESSAGE subscription per MDM type whose in-memory
 * channel feeds its matcher, so the subscription submitter (a storage interceptor that sees each
 * write) and processor (matching, delivery) are imported here, with the in-memory broker that
 * {@link JpaStorageConfig} already brings. Only the MESSAGE channel type is allowed: no rest-hook or
 * e-mail subscription can be created through the API.
 *
 * <p>A Patient carrying none of the match fields (e.g. identifier only) is not processed by MDM and
 * gets no golden record; the rules' fields are the demographics the sync engine writes.
 */
@Configuration
@Import({
	MdmConsumerConfig.class, // matcher, link store, golden resources, $mdm-* providers
	MdmSubmitterConfig.class, // $mdm-submit, the channel submitter
	SubscriptionSubmitterConfig.class, // hands each write to the subscription matcher
	SubscriptionProcessorConfig.class, // matches writes to subscriptions and delivers (in memory)
})
public class MdmConfig {

	private static final Logger ourLog = LoggerFactory.getLogger(MdmConfig.class);

	/** Spring resource location of the rules: {@code file:/...} or {@code classpath:mdm-rules.json}. */
	@Value("${conflictdesk.mdm.rules}")
	private String myRulesLocation;

	@Bean
	public SubscriptionSettings subscriptionSettings() {
		SubscriptionSettings s = new SubscriptionSettings();
		s.addSupportedSubscriptionType(SubscriptionChannelType.MESSAGE);
		return s;
	}

	/**
	 * The subscription processor wants an e-mail sender; with only MESSAGE subscriptions allowed it is
	 * never called, and a server holding patient data sends no e-mail.
	 */
	@Bean
	public IEmailSender emailSender() {
		return theDetails -> {
			throw new UnsupportedOperationException("e-mail subscriptions are disabled on this server");
		};
	}

	/** HAPI's nickname table (Bob = Robert), which the NICKNAME matcher reads; the matcher factory needs one. */
	@Bean
	public INicknameSvc nicknameSvc() {
		return new NicknameSvc();
	}

	@Bean
	public IMdmSettings mdmSettings(MdmRuleValidator theRuleValidator) throws IOException {
		Resource rules = new DefaultResourceLoader().getResource(myRulesLocation);
		String json;
		try (InputStream in = rules.getInputStream()) {
			json = new String(in.readAllBytes(), StandardCharsets.UTF_8);
		}
		// setScriptText parses and validates the rules (fields, search params, result map): a bad
		// file stops the server at start-up instead of matching by surprise.
		MdmSettings settings = new MdmSettings(theRuleValidator).setEnabled(true).setScriptText(json);
		// Nothing below a MATCH is merged by a machine; golden records follow their sources when these go.
		settings.setAutoExpungeGoldenResources(true);
		ourLog.info("MDM enabled; match rules {} version {} loaded from {}", settings.getMdmRules().getMdmTypes(),
				settings.getMdmRules().getVersion(), myRulesLocation);
		return settings;
	}
}
