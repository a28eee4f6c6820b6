package org.conflictdesk.hapi;

import ca.uhn.fhir.context.FhirContext;
import ca.uhn.fhir.context.support.IValidationSupport;
import ca.uhn.fhir.jpa.api.dao.DaoRegistry;
import ca.uhn.fhir.jpa.api.dao.IFhirResourceDao;
import ca.uhn.fhir.jpa.packages.IHapiPackageCacheManager;
import ca.uhn.fhir.jpa.packages.IPackageInstallerSvc;
import ca.uhn.fhir.jpa.packages.PackageInstallOutcomeJson;
import ca.uhn.fhir.jpa.packages.PackageInstallationSpec;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.SmartInitializingSingleton;
import ca.uhn.fhir.rest.api.server.SystemRequestDetails;
import ca.uhn.fhir.rest.server.exceptions.ResourceNotFoundException;
import org.hl7.fhir.instance.model.api.IBaseResource;
import org.springframework.beans.factory.annotation.Value;
import org.springframework.core.io.Resource;
import org.springframework.core.io.support.PathMatchingResourcePatternResolver;
import org.springframework.stereotype.Component;

import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;

/**
 * Loads FHIR IG packages (npm tarballs, downloaded by deploy/hapi-fhir.sh into
 * {@code conflictdesk.packages.dir}) through HAPI's own package installer, so that
 * {@code $validate} knows their profiles, value sets and code systems.
 *
 * <p>{@code conflictdesk.packages.list} is a comma-separated list of {@code name#version:MODE}:
 * <ul>
 *   <li>{@code STORE_ONLY}: the package goes into HAPI's package cache (NPM_PACKAGE* tables) only.
 *       The JPA validation chain's {@code NpmJpaValidationSupport} resolves its canonical resources
 *       by URL from there. Cheap: used for the big terminology/extension packages.
 *   <li>{@code STORE_AND_INSTALL}: additionally every StructureDefinition, ValueSet and CodeSystem
 *       becomes a normal resource (searchable: {@code StructureDefinition?url=...}).
 * </ul>
 * Dependencies are never fetched (packages.fhir.org is not reachable from here): every package the
 * validator needs must be listed. A STORE_ONLY package version already in the cache is skipped
 * outright; a STORE_AND_INSTALL one is passed to the installer again, which leaves resources that
 * already exist (same url) alone, so a deleted one comes back on the next start.
 *
 * <p>Then every {@code classpath:fhir-standins/*.json} resource is written with its own id (an
 * unchanged resource is a no-op update). These are minimal, clearly tagged stand-ins for canonicals
 * of packages that cannot be fetched here (US Core 6.1.0): see deploy/hapi-fhir/README.md.
 *
 * <p>Runs after all singletons exist and before the web server starts, so {@code /fhir/metadata}
 * (the readiness probe) only answers once the packages are loaded.
 */
@Component
public class FhirPackageLoader implements SmartInitializingSingleton {

	private static final Logger ourLog = LoggerFactory.getLogger(FhirPackageLoader.class);

	/** Resource types made into real resources for STORE_AND_INSTALL packages. */
	static final List<String> INSTALL_TYPES = List.of("CodeSystem", "ValueSet", "StructureDefinition");

	private final IPackageInstallerSvc myInstaller;
	private final IHapiPackageCacheManager myPackageCache;
	private final DaoRegistry myDaoRegistry;
	private final FhirContext myFhirContext;
	private final IValidationSupport myValidationSupport;

	@Value("${conflictdesk.packages.dir:}")
	private String myDir;

	@Value("${conflictdesk.packages.list:}")
	private String myList;

	public FhirPackageLoader(
			IPackageInstallerSvc theInstaller,
			IHapiPackageCacheManager thePackageCache,
			DaoRegistry theDaoRegistry,
			FhirContext theFhirContext,
			IValidationSupport theValidationSupport) {
		myInstaller = theInstaller;
		myPackageCache = thePackageCache;
		myDaoRegistry = theDaoRegistry;
		myFhirContext = theFhirContext;
		myValidationSupport = theValidationSupport;
	}

	record PackageRef(String name, String version, PackageInstallationSpec.InstallModeEnum mode) {
		/** File name `npm pack` gives the tarball. */
		String fileName() {
			return name + "-" + version + ".tgz";
		}
	}

	static List<PackageRef> parse(String theList) {
		List<PackageRef> out = new ArrayList<>();
		for (String raw : theList.split(",")) {
			String item = raw.trim();
			if (item.isEmpty()) {
				continue;
			}
			int hash = item.indexOf('#');
			int colon = item.lastIndexOf(':');
			if (hash <= 0 || colon <= hash + 1) {
				throw new IllegalArgumentException("conflictdesk.packages.list: bad entry '" + item
						+ "' (expected name#version:STORE_ONLY|STORE_AND_INSTALL)");
			}
			out.add(new PackageRef(item.substring(0, hash), item.substring(hash + 1, colon),
					PackageInstallationSpec.InstallModeEnum.valueOf(item.substring(colon + 1).trim())));
		}
		return out;
	}

	private boolean isCached(PackageRef p) {
		try {
			return myPackageCache.loadPackageMetadata(p.name()).getVersions().containsKey(p.version());
		} catch (ResourceNotFoundException e) {
			return false;
		}
	}

	@Override
	public void afterSingletonsInstantiated() {
		loadPackages();
		loadStandIns();
		// Anything the validation chain cached as "not found" before these existed is stale now.
		myValidationSupport.invalidateCaches();
	}

	@SuppressWarnings({"unchecked", "rawtypes"})
	private void loadStandIns() {
		Resource[] files;
		try {
			files = new PathMatchingResourcePatternResolver().getResources("classpath*:fhir-standins/*.json");
		} catch (IOException e) {
			throw new IllegalStateException("cannot list classpath fhir-standins/", e);
		}
		for (Resource file : files) {
			IBaseResource res;
			try (InputStream in = file.getInputStream()) {
				res = myFhirContext.newJsonParser().parseResource(new String(in.readAllBytes(), StandardCharsets.UTF_8));
			} catch (IOException e) {
				throw new IllegalStateException("cannot read stand-in " + file, e);
			}
			IFhirResourceDao dao = myDaoRegistry.getResourceDao(res.getClass());
			boolean changed = !dao.update(res, new SystemRequestDetails()).isNop();
			ourLog.info("FHIR stand-in {}/{} {}", myFhirContext.getResourceType(res),
					res.getIdElement().getIdPart(), changed ? "written" : "unchanged");
		}
	}

	private void loadPackages() {
		List<PackageRef> packages = parse(myList);
		if (packages.isEmpty()) {
			return;
		}
		if (myDir == null || myDir.isBlank()) {
			ourLog.warn("conflictdesk.packages.dir (env HAPI_PACKAGES_DIR) not set: NOT loading the {} FHIR "
					+ "packages listed; $validate will not know their profiles", packages.size());
			return;
		}
		long t0 = System.currentTimeMillis();
		for (PackageRef p : packages) {
			if (p.mode() == PackageInstallationSpec.InstallModeEnum.STORE_ONLY && isCached(p)) {
				ourLog.info("FHIR package {}#{} already in the package cache", p.name(), p.version());
				continue;
			}
			Path file = Path.of(myDir, p.fileName());
			byte[] bytes;
			try {
				bytes = Files.readAllBytes(file);
			} catch (IOException e) {
				// Fail loudly: a server that silently validates without the profiles is worse than none.
				throw new IllegalStateException("FHIR package " + p.name() + "#" + p.version() + " missing: "
						+ file + " (deploy/hapi-fhir.sh downloads it)", e);
			}
			long t1 = System.currentTimeMillis();
			PackageInstallationSpec spec = new PackageInstallationSpec()
					.setName(p.name())
					.setVersion(p.version())
					.setPackageContents(bytes)
					.setInstallMode(p.mode())
					.setFetchDependencies(false);
			if (p.mode() == PackageInstallationSpec.InstallModeEnum.STORE_AND_INSTALL) {
				spec.setInstallResourceTypes(new ArrayList<>(INSTALL_TYPES));
				// A resource of this package version (url + version) already there is left as it is.
				spec.setReloadExisting(false);
			}
			PackageInstallOutcomeJson outcome = myInstaller.install(spec);
			ourLog.info("FHIR package {}#{} ({}, {} kB) loaded in {} ms; resources installed: {}",
					p.name(), p.version(), p.mode(), bytes.length / 1024, System.currentTimeMillis() - t1,
					outcome.getResourcesInstalled());
		}
		ourLog.info("{} FHIR packages loaded in {} ms", packages.size(), System.currentTimeMillis() - t0);
	}
}
